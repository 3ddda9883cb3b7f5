"""The sensor that turns new labels into work.

Each tick it looks, cheaply, at every declared dataset. Labels found in the
data but not in the `images` table request a run of the per-dataset assets
(images, then the checkpoint, which continues training with the new labels
added). Labels the current checkpoint knows whose `clusters` partition was
never materialized request their per-label run. Run keys make every request
happen once. Old labels' results are not recomputed when the checkpoint
changes: the UI shows them stale (upstream changed), and the user decides
(materialize them, or backfill "stale" partitions) - retraining shifts every
label a little, and recomputing them all on each new label would make adding
one label cost as much as the whole dataset.
"""

import hashlib
import os

import polars as pl
from dagster import AssetKey, DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from .mining.datasets.sources import discover_labels
from .mining.labels import label_key
from .partitions import multi_key
from .resources import DiffmineResource


def build_new_label_sensor(dataset_job, label_job, interval_s: int = 30):
    @sensor(
        name="new_labels",
        jobs=[dataset_job, label_job],
        minimum_interval_seconds=interval_s,
        # on unless DIFFMINE_SENSOR=stopped (e.g. a deployment that launches work itself)
        default_status=DefaultSensorStatus.STOPPED if os.environ.get("DIFFMINE_SENSOR") == "stopped" else DefaultSensorStatus.RUNNING,
        description="Discovers new labels in the declared datasets and requests their ingestion, the checkpoint's "
        "continuation, and then the new labels' partitions.",
    )
    def new_labels(context: SensorEvaluationContext, diffmine: DiffmineResource):
        lake = diffmine.lake
        mined = context.instance.get_materialized_partitions(AssetKey("clusters"))
        requests, notes = [], []
        for spec in diffmine.project.datasets:
            name = spec.name
            found = {label_key(lbl): lbl for lbl in discover_labels(spec)}
            images_file = lake.partition_file("images", name)
            have = set(pl.read_parquet(images_file, columns=["label_key"])["label_key"].unique().to_list()) if images_file.exists() else set()
            new = sorted(set(found) - have)
            if new:
                digest = hashlib.sha1("\n".join(new).encode()).hexdigest()[:12]
                notes.append(f"{name}: new labels {[found[k] for k in new]}")
                requests.append(RunRequest(job_name=dataset_job.name, partition_key=name, run_key=f"ingest:{name}:{digest}", tags={"diffmine/reason": "new labels"}))
                continue
            ckpt_file = lake.partition_file("checkpoint", name)
            if not ckpt_file.exists():
                continue
            ckpt = pl.read_parquet(ckpt_file).row(0, named=True)
            for key in sorted(have & set(ckpt["labels"])):
                partition = multi_key(name, key)
                if str(partition) not in mined:
                    requests.append(RunRequest(job_name=label_job.name, partition_key=partition, run_key=f"mine:{name}:{key}:{ckpt['checkpoint_id']}", tags={"diffmine/reason": "label not mined"}))
        if not requests:
            return SkipReason("no new label and no label left to mine")
        context.log.info("; ".join(notes) or f"{len(requests)} label partitions to mine")
        return SensorResult(run_requests=requests)

    return new_labels
