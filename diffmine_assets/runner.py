"""Materializing a dataset from Python or the command line, through the
project's Dagster instance: per-dataset assets first, then one run per label
partition, as a backfill launched from the UI would do."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from dagster import AssetKey, AssetSelection, DagsterInstance, DagsterRunStatus, RunsFilter

from .definitions import DATASET_JOB, LABEL_JOB, REPORT_JOB, build_definitions
from .mining.datasets.sources import DatasetError, discover
from .mining.estimate import RunEstimate, estimate_run, training_budget
from .partitions import multi_key
from .storage.lake import Lake


class SelectionError(ValueError):
    pass


def _job_assets(defs, job_name: str) -> list[AssetKey]:
    job = defs.resolve_job_def(job_name)
    return sorted(job.asset_layer.executable_asset_keys, key=lambda k: k.to_user_string())


def dataset_labels(lake: Lake, dataset: str) -> list[tuple[str, str]]:
    """(label, label_key) pairs of a dataset, from its materialized images."""
    df = lake.read_partition("images", dataset).select("label", "label_key").unique().sort("label_key")
    return list(df.iter_rows())


def reap_dead_runs(instance: DagsterInstance, log=print) -> list[str]:
    """Runs this command line started whose process is gone (killed, crashed)
    are marked failed and give back their pool slots: otherwise a killed
    training run would hold the `torch` pool forever and every later run
    would wait on it."""
    reaped = []
    runs = instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING], tags={"diffmine/launched_by": "cli", "diffmine/host": socket.gethostname()}))
    for run in runs:
        pid = int(run.tags.get("diffmine/pid", "0") or 0)
        if pid <= 0 or pid == os.getpid() or _alive(pid):
            continue
        instance.report_run_failed(run, f"the process that ran it (pid {pid}) is gone: killed or crashed")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        log(f"marked run {run.run_id[:8]} failed: its process {pid} is gone")
        reaped.append(run.run_id)
    return reaped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def estimate(project, dataset: str) -> RunEstimate:
    """The whole run's time on this machine, before it starts: counts from
    the images table when it exists, else from the dataset's files."""
    spec = project.dataset(dataset)
    lake = Lake(project.lake)
    if lake.partition_file("images", dataset).exists():
        images = lake.read_partition("images", dataset)
        labels = sorted(images["label_key"].unique().to_list())
        n, held = len(images), int((images["split"] == "val").sum())
    else:
        found = discover(spec, lake.files_dir(dataset))
        labels = sorted({c.label for c in found.candidates})
        n = len(found.candidates)
        held = int(round(n * spec.options.val_fraction))
    return estimate_run(labels or ["-"], n, held, n - held, spec.options.resolution, spec.training, spec.typicality)


def run_dataset(instance: DagsterInstance, config_path: Path, dataset: str, labels=None, select=None, log=print, budget_s: float | None = None) -> dict:
    t0 = time.monotonic()
    reap_dead_runs(instance, log)
    defs = build_definitions(config_path)
    project = defs.resources["diffmine"].project
    project.dataset(dataset)  # fails early, naming the declared datasets
    run_config = None
    planned = None
    if budget_s is not None or not select:
        try:
            planned = estimate(project, dataset)
            log(planned.describe())
        except DatasetError as e:
            # the estimate is advice: the images asset reports the problem as the run's failure
            log(f"estimate: not available ({e})")
        if budget_s is not None and planned is not None:
            train_s = training_budget(budget_s, planned)
            run_config = {"ops": {"checkpoint": {"config": {"time_budget_s": train_s}}}}
            log(f"budget {budget_s / 60:.1f} min: training gets {train_s / 60:.1f} min")
    job_names = {j.name for j in defs.resolve_all_job_defs()}
    dataset_keys = _job_assets(defs, DATASET_JOB)
    label_keys = _job_assets(defs, LABEL_JOB) if LABEL_JOB in job_names else []
    report_keys = _job_assets(defs, REPORT_JOB) if REPORT_JOB in job_names else []
    if select:
        known = {k.path[-1]: k for k in dataset_keys + label_keys + report_keys}
        unknown = [s for s in select if s not in known]
        if unknown:
            raise SelectionError(f"unknown assets {unknown}; assets are {sorted(known)}")
        # a multi-asset (checkpoint + training_log) runs whole
        chosen = AssetSelection.assets(*[known[s] for s in select]).required_multi_asset_neighbors().resolve(defs.resolve_asset_graph())
        dataset_keys = [k for k in dataset_keys if k in chosen]
        label_keys = [k for k in label_keys if k in chosen]
        report_keys = [k for k in report_keys if k in chosen]

    runs = []

    def launch(job_name, partition_key, keys, what, config=None):
        job = defs.resolve_job_def(job_name)
        started = time.monotonic()
        log(f"materializing {', '.join(k.path[-1] for k in keys)} for {what} ...")
        result = job.execute_in_process(
            instance=instance,
            partition_key=partition_key,
            asset_selection=keys,
            run_config=config,
            raise_on_error=False,
            tags={"diffmine/launched_by": "cli", "diffmine/pid": str(os.getpid()), "diffmine/host": socket.gethostname()},
        )
        seconds = time.monotonic() - started
        status = "succeeded" if result.success else "FAILED"
        log(f"  run {result.run_id[:8]} {status} in {seconds:.1f} s")
        if not result.success:
            for event in result.all_events:
                if event.is_failure and event.event_specific_data is not None:
                    err = getattr(event.event_specific_data, "error", None)
                    log(f"  {event.step_key}: {err.message.strip() if err else event.message}")
        runs.append({"run_id": result.run_id, "partition": what, "success": result.success, "seconds": round(seconds, 2)})
        return result.success

    ok = True
    if dataset_keys:
        trains = any(k.path[-1] == "checkpoint" for k in dataset_keys)
        ok = launch(DATASET_JOB, dataset, dataset_keys, f"dataset={dataset}", run_config if trains else None)
    label_pairs = []
    if ok and label_keys:
        pairs = dataset_labels(Lake(project.lake), dataset)
        if labels:
            by_any = {**{lbl: (lbl, key) for lbl, key in pairs}, **{key: (lbl, key) for lbl, key in pairs}}
            missing = [lbl for lbl in labels if lbl not in by_any]
            if missing:
                raise SelectionError(f"dataset {dataset!r} has no labels {missing}; labels are {[p[0] for p in pairs]}")
            pairs = [by_any[lbl] for lbl in labels]
        for label, key in pairs:
            label_pairs.append(label)
            ok = launch(LABEL_JOB, multi_key(dataset, key), label_keys, f"dataset={dataset}, label={label}") and ok
    if ok and report_keys:
        launch(REPORT_JOB, dataset, report_keys, f"dataset={dataset} (report)")
    failed = sum(not r["success"] for r in runs)
    report = Lake(project.lake).files_dir(dataset, "report", "index.html")
    return {
        "report": str(report) if report.exists() else None,
        "dataset": dataset,
        "runs": len(runs),
        "failed_runs": failed,
        "labels": label_pairs,
        "run_ids": [r["run_id"] for r in runs],
        "seconds": round(time.monotonic() - t0, 2),
        "estimated_seconds": round(planned.total_s, 1) if planned else None,
        "budget_seconds": budget_s,
    }
