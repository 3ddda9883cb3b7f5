"""The sensor that turns new labels into work.

Each tick it looks, cheaply, at every declared dataset, with the same file
filter as ingestion. A dataset never materialized is left alone: its first
run is the user's act (`diffmine materialize`, or Materialize in the UI), so
opening the UI never starts a training nobody asked for. Labels found in the data but not in the `images` table
request a run of the dataset's per-dataset assets (images, then the
checkpoint, which continues training with the new labels added). Labels the
current checkpoint knows whose `clusters` partition was never materialized
request their per-label run.

Run keys make every request happen once. The `images` asset records the
labels it found but could not use (only a text file, only corrupt images)
with a fingerprint of their files: such a label is not asked for again until
its files change, and it never holds back the dataset's other labels.
A run that fails is retried by Dagster's run retries (dagster.yaml), not by
this sensor; a run the user cancelled is not asked for again (its run key
is spent) until the label's files change, and each tick says so in its
skip reason, which the UI shows in the sensor's tick history.

Old labels' results are not recomputed when the checkpoint changes: the UI
shows them stale (upstream changed), and the user decides (materialize them,
or backfill "stale" partitions) - retraining shifts every label a little, and
recomputing them all on each new label would make adding one label cost as
much as the whole dataset.
"""

import hashlib
import os

from dagster import DagsterRunStatus, DefaultSensorStatus, RunRequest, RunsFilter, SensorEvaluationContext, SensorResult, SkipReason, sensor
from dagster._core.storage.tags import RUN_KEY_TAG

from .mining.datasets.base import DatasetError
from .mining.datasets.registry import label_fingerprints
from .mining.labels import label_key
from .partitions import DATASET_JOB, LABEL_JOB, asset_key, job_name, multi_key
from .resources import DiffmineResource


def _cancelled(context: SensorEvaluationContext, run_key: str) -> str | None:
    """The id of the run asked for under `run_key`, when the user cancelled it."""
    runs = context.instance.get_runs(filters=RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1)
    return runs[0].run_id if runs and runs[0].status in (DagsterRunStatus.CANCELED, DagsterRunStatus.CANCELING) else None


def _unusable_labels(context: SensorEvaluationContext, dataset: str) -> dict[str, str]:
    """Labels the last ingestion found but could not use, with the
    fingerprint their files had then (the `images` asset records them)."""
    event = context.instance.get_latest_materialization_event(asset_key(dataset, "images"))
    entry = event.asset_materialization.metadata.get("unusable_labels") if event and event.asset_materialization else None
    return dict(entry.value) if entry is not None else {}


SENSOR_INTERVAL_ENV = "DIFFMINE_SENSOR_INTERVAL"
DEFAULT_SENSOR_INTERVAL_S = 30


def sensor_interval() -> int:
    """Seconds between the sensor's looks at the data: DIFFMINE_SENSOR_INTERVAL,
    default 30 (each look lists every declared folder: a large collection on a
    network disk may want minutes)."""
    raw = os.environ.get(SENSOR_INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_SENSOR_INTERVAL_S
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{SENSOR_INTERVAL_ENV}={raw!r}: give whole seconds of at least 1 (default {DEFAULT_SENSOR_INTERVAL_S})")
    return value


def build_new_label_sensor(jobs, interval_s: int | None = None):
    interval_s = sensor_interval() if interval_s is None else interval_s

    @sensor(
        name="new_labels",
        jobs=jobs,
        minimum_interval_seconds=interval_s,
        # on unless DIFFMINE_SENSOR=stopped (e.g. a deployment that launches work itself)
        default_status=DefaultSensorStatus.STOPPED if os.environ.get("DIFFMINE_SENSOR") == "stopped" else DefaultSensorStatus.RUNNING,
        description="Discovers new labels in the declared datasets and requests their ingestion, the checkpoint's "
        "continuation, and then the new labels' partitions.",
    )
    def new_labels(context: SensorEvaluationContext, diffmine: DiffmineResource):
        lake = diffmine.lake
        requests, notes = [], []
        for spec in diffmine.project.datasets:
            name = spec.name
            try:
                found = {label_key(lbl): (lbl, stamp) for lbl, stamp in label_fingerprints(spec).items()}
            except (DatasetError, OSError) as exc:
                notes.append(f"{name}: cannot list labels: {exc}")
                continue
            images = lake.read_partition_or_none("images", name, columns=["label_key"])
            if images is None:
                notes.append(f"{name}: never materialized; its first run is yours (diffmine materialize --dataset {name}, or Materialize in the UI), "
                             "new labels are picked up after it")
                continue
            have = set(images["label_key"].unique().to_list())
            unusable = _unusable_labels(context, name)
            # a label ingestion could not use is new again only once its files change
            new = sorted(k for k in set(found) - have if unusable.get(found[k][0]) != found[k][1])
            if new:
                listing = "\n".join(f"{k}:{found[k][1]}" for k in new)
                run_key = f"ingest:{name}:{hashlib.sha1(listing.encode()).hexdigest()[:12]}"
                cancelled = _cancelled(context, run_key)
                if cancelled:
                    notes.append(f"{name}: new labels {[found[k][0] for k in new]} not asked for again: their run {cancelled[:8]} was cancelled "
                                 f"(asked again when their files change; or materialize {name} yourself)")
                    continue
                notes.append(f"{name}: new labels {[found[k][0] for k in new]}")
                requests.append(RunRequest(job_name=job_name(name, DATASET_JOB), partition_key=name, run_key=run_key, tags={"diffmine/reason": "new labels"}))
                # the checkpoint is about to change: mine with the new one
                continue
            ckpt_table = lake.read_partition_or_none("checkpoint", name)
            if ckpt_table is None:
                continue
            ckpt = ckpt_table.row(0, named=True)
            mined = context.instance.get_materialized_partitions(asset_key(name, "clusters"))
            for key in sorted(have & set(ckpt["labels"])):
                partition = multi_key(name, key)
                if str(partition) not in mined:
                    run_key = f"mine:{name}:{key}:{ckpt['checkpoint_id']}"
                    cancelled = _cancelled(context, run_key)
                    if cancelled:
                        notes.append(f"{name}: label {key} not mined and not asked for again: its run {cancelled[:8]} was cancelled (materialize it yourself)")
                        continue
                    requests.append(RunRequest(job_name=job_name(name, LABEL_JOB), partition_key=partition, run_key=run_key, tags={"diffmine/reason": "label not mined"}))
        if not requests:
            return SkipReason("no new label and no label left to mine" + (f" ({'; '.join(notes)})" if notes else ""))
        context.log.info("; ".join(notes) or f"{len(requests)} label partitions to mine")
        return SensorResult(run_requests=requests)

    return new_labels
