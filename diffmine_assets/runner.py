"""Materializing a dataset from Python or the command line, through the
project's Dagster instance: per-dataset assets first, then one run per label
partition, as a backfill launched from the UI would do."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from dagster import AssetKey, AssetSelection, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContext
from dagster._core.storage.tags import REPOSITORY_LABEL_TAG

from .assets.evaluation import stored_figures
from .definitions import build_definitions
from .mining.config.project import ConfigError, load_config
from .mining.datasets.base import DatasetError
from .mining.datasets.registry import discover
from .mining.training.estimate import BudgetTooShort, RunEstimate, estimate_run, training_budget
from .partitions import BASELINE_JOB, DATASET_JOB, LABEL_JOB, REPORT_JOB, asset_key, identifier, job_name, multi_key
from .storage.lake import Lake


# The UI lists a job's runs by the job's name and this tag ("<repository>@<code location>"), which only runs launched
# through a code location get: without it the command line's runs are in the global Runs list but not under their jobs.
# The location is named after the module wherever it is loaded (dagster dev -m, diffmine ui, workspace.yaml).
LOCATION_LABEL = "__repository__@diffmine_assets.definitions"


class SelectionError(ConfigError):
    """An asset, label or dataset the command line named that does not exist:
    said in one line, like a configuration mistake."""


def _job_assets(defs, name: str) -> list[AssetKey]:
    job = defs.resolve_job_def(name)
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
    if lake.has_partition("images", dataset):
        images = lake.read_partition("images", dataset)
        labels = sorted(images["label_key"].unique().to_list())
        n, held = len(images), int((images["split"] == "val").sum())
    else:
        found = discover(spec, lake.files_dir(dataset))
        labels = sorted({c.label for c in found.candidates})
        n = len(found.candidates)
        held = int(round(n * spec.options.val_fraction))
    return estimate_run(labels or ["-"], n, held, n - held, spec.options.resolution, spec.training, spec.typicality, translation=spec.translation)


class _Loading(LoadingContext):
    """The loading context Dagster's stale-status resolver wants, for one
    decision of the command line (a fresh one per decision: it caches)."""

    def __init__(self, instance: DagsterInstance):
        self._instance = instance
        self._loaders = {}

    @property
    def instance(self) -> DagsterInstance:
        return self._instance

    @property
    def loaders(self):
        return self._loaders


# Outputs that a run may leave unwritten (no ground truth; one label, or the
# label matrix turned off): never materialized is their normal state, so
# they never make the assets beside them run again.
OPTIONAL_OUTPUTS = ("ground_truth_boxes", "label_matrix")
# Read from the files each time: they are how new or changed images are seen.
ALWAYS = ("images", "ground_truth_boxes")


def _needs(instance: DagsterInstance, graph, keys: list[AssetKey], partition, force: bool) -> tuple[list[AssetKey], list[AssetKey]]:
    """(to run, up to date) among `keys` for one partition, by Dagster's own
    staleness: missing, stale (new data version upstream, changed code
    version = changed options) or fresh. Whatever depends on an asset that
    runs runs too; a multi-asset runs whole."""
    if force:
        return list(keys), []
    resolver = CachingStaleStatusResolver(instance, graph, _Loading(instance))
    chosen = set(keys)
    run = {k for k in keys if k.path[-1] not in OPTIONAL_OUTPUTS and resolver.get_status(k, partition) != StaleStatus.FRESH}
    frontier = list(run)
    while frontier:
        for child in graph.get(frontier.pop()).child_keys:
            if child in chosen and child not in run:
                run.add(child)
                frontier.append(child)
    if run:
        run |= {k for k in AssetSelection.assets(*run).required_multi_asset_neighbors().resolve(graph) if k in chosen}
    return [k for k in keys if k in run], [k for k in keys if k not in run and k.path[-1] not in OPTIONAL_OUTPUTS]


def _never_materialized(instance: DagsterInstance, keys: list[AssetKey]) -> bool:
    return all(instance.get_latest_materialization_event(k) is None for k in keys)


def run_dataset(instance: DagsterInstance, config_path: Path, dataset: str, labels=None, select=None, log=print, budget_s: float | None = None,
                force: bool = False, verbose: bool = False, evaluation_control: str | None = None,
                evaluation_curve: bool = False) -> dict:
    """Materialize what is missing or stale of one dataset (everything with
    `force`): its per-dataset assets, then each label's partition, then the
    report. Returns figures, with what was skipped as up to date."""
    t0 = time.monotonic()
    reap_dead_runs(instance, log)
    defs = build_definitions(config_path)
    graph = defs.resolve_asset_graph()
    project = defs.resources["diffmine"].project
    project.dataset(dataset)  # fails early, naming the declared datasets
    dataset_keys = _job_assets(defs, job_name(dataset, DATASET_JOB))
    label_keys = _job_assets(defs, job_name(dataset, LABEL_JOB))
    report_keys = _job_assets(defs, job_name(dataset, REPORT_JOB))
    baseline_keys: list[AssetKey] = []  # a comparison, run only when asked for by name
    if select:
        every_baseline = _job_assets(defs, job_name(dataset, BASELINE_JOB))
        known = {k.path[-1]: k for k in dataset_keys + label_keys + report_keys + every_baseline}
        unknown = [s for s in select if s not in known]
        if unknown:
            raise SelectionError(f"unknown assets {unknown}; assets are {sorted(known)}")
        # a multi-asset (checkpoint + training_log) runs whole
        chosen = AssetSelection.assets(*[known[s] for s in select]).required_multi_asset_neighbors().resolve(graph)
        dataset_keys = [k for k in dataset_keys if k in chosen]
        label_keys = [k for k in label_keys if k in chosen]
        report_keys = [k for k in report_keys if k in chosen]
        baseline_keys = [k for k in every_baseline if k in chosen]

    runs: list[dict] = []
    skipped: dict[str, int] = {}
    not_used: dict = {}
    # quiet: the command line prints one line per run; the events are in the UI
    quiet = None if verbose else {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}

    def skip(keys, what):
        for k in keys:
            skipped[k.path[-1]] = skipped.get(k.path[-1], 0) + 1

    def launch(kind, partition_key, keys, what, config=None):
        job = defs.resolve_job_def(job_name(dataset, kind))
        started = time.monotonic()
        names = ", ".join(k.path[-1] for k in keys) if len(keys) <= 4 else f"{len(keys)} assets"
        run_config = {**(quiet or {}), **(config or {})} or None
        result = job.execute_in_process(
            instance=instance,
            partition_key=partition_key,
            asset_selection=keys,
            run_config=run_config,
            raise_on_error=False,
            tags={"diffmine/launched_by": "cli", "diffmine/pid": str(os.getpid()), "diffmine/host": socket.gethostname(), REPOSITORY_LABEL_TAG: LOCATION_LABEL,
                  # the command line reports a failure to the person who ran it; Dagster's run retries are for runs nobody watches
                  "dagster/max_retries": "0"},
        )
        seconds = time.monotonic() - started
        status = "ok" if result.success else "FAILED"
        log(f"{status:6s} {what:<24s} {names}  ({seconds:.1f} s, run {result.run_id[:8]})")
        if not result.success:
            for event in result.all_events:
                if event.is_step_failure and event.event_specific_data is not None:
                    log(f"       {event.step_key}: {_root_cause(getattr(event.event_specific_data, 'error', None)) or event.message}")
        runs.append({"run_id": result.run_id, "partition": what, "assets": [k.path[-1] for k in keys], "success": result.success, "seconds": round(seconds, 2)})
        if result.success and kind == DATASET_JOB and any(k.path[-1] == "images" for k in keys):
            not_used.update(_ingest_summary(instance, dataset, result.run_id, log))
        return result.success

    ok = True
    planned = None
    first = [k for k in dataset_keys if k.path[-1] in ALWAYS]
    rest = [k for k in dataset_keys if k.path[-1] not in ALWAYS]
    if first and rest and (force or _never_materialized(instance, rest)):
        # nothing to compare with yet: one run for the whole per-dataset step
        first, rest, todo = first + rest, [], rest
    else:
        todo = []
    if rest:
        # the files are read first: their data version decides what is stale
        if first:
            ok = launch(DATASET_JOB, dataset, first, dataset)
            first = []
        if ok:
            todo, fresh = _needs(instance, graph, rest, dataset, force)
            skip(fresh, dataset)
    if ok and (first or todo):
        run_config = {}
        if any(k.path[-1] == "checkpoint" for k in todo):
            planned = _estimate_quietly(project, dataset, log)
            ops = {}
            if budget_s is not None and planned is not None:
                # the label runs this command will make: none without label assets, the named ones with --label
                share = 0.0 if not (label_keys or baseline_keys) else (min(1.0, len(labels) / max(planned.labels, 1)) if labels else 1.0)
                try:
                    train_s = training_budget(budget_s, planned, share, spent_s=time.monotonic() - t0)
                except BudgetTooShort as exc:
                    raise SelectionError(f"--budget: {exc}") from None
                ops["time_budget_s"] = train_s
                log(f"budget {budget_s / 60:.1f} min: training gets {train_s / 60:.1f} min")
            if force:
                ops["retrain"] = True
            if ops:
                run_config = {"ops": {f"{identifier(dataset)}__checkpoint": {"config": ops}}}
        ok = launch(DATASET_JOB, dataset, sorted(set(first) | set(todo), key=lambda k: k.path[-1]), dataset, run_config)
    label_pairs, over_budget, left_stale = [], [], []
    checkpoint = _trained_checkpoint(instance, project, dataset, runs, log) if ok else None
    if ok and (label_keys or baseline_keys):
        pairs = dataset_labels(Lake(project.lake), dataset)
        if labels:
            by_any = {**{lbl: (lbl, key) for lbl, key in pairs}, **{key: (lbl, key) for lbl, key in pairs}}
            missing = [lbl for lbl in labels if lbl not in by_any]
            if missing:
                raise SelectionError(f"dataset {dataset!r} has no labels {missing}; labels are {[p[0] for p in pairs]}")
            pairs = [by_any[lbl] for lbl in labels]
        # The checkpoint just continued for new labels: like the new_labels
        # sensor, mine the labels never mined; those mined with the previous
        # checkpoint are left stale for the user to ask for (named with
        # --label, or the next run), or adding one label would cost the whole
        # dataset. A continuation for changed images alone mines what is stale.
        mined_before, gained = set(), []
        if checkpoint is not None and checkpoint["continued_from"] and not force and not labels:
            gained = _labels_gained(checkpoint)
            if gained:
                mined_before = set(instance.get_materialized_partitions(asset_key(dataset, "clusters")))
        for label, key in pairs:
            partition = multi_key(dataset, key)
            if partition in mined_before:
                left_stale.append(label)
                continue
            work = [(kind, *_needs(instance, graph, keys, partition, force)) for kind, keys in ((LABEL_JOB, label_keys), (BASELINE_JOB, baseline_keys)) if keys]
            if budget_s is not None and any(todo for _, todo, _ in work) and time.monotonic() - t0 > budget_s:
                over_budget.append(label)  # checked between runs: a run that started finishes
                continue
            label_pairs.append(label)
            for kind, todo, fresh in work:
                skip(fresh, label)
                if todo:
                    ok = launch(kind, partition, todo, f"{dataset} / {label}") and ok
    if left_stale:
        log(f"not mined again: {', '.join(left_stale)} (mined with the checkpoint before it continued for the new labels {', '.join(gained)}; stale in the UI); "
            f"the same command again mines them, or --label NAME one of them")
    if over_budget:
        log(f"budget of {budget_s:.0f} s spent after {time.monotonic() - t0:.0f} s: labels not mined: {', '.join(over_budget)}; "
            f"the same command again goes on from here (what is done is kept)")
    if ok and report_keys and not over_budget:  # a report of some labels only would read as the whole dataset's
        todo, fresh = _needs(instance, graph, report_keys, dataset, force)
        skip(fresh, dataset)
        if todo:
            config = None
            if evaluation_control and any(k.path[-1] == "evaluation" for k in todo):
                config = {"ops": {f"{identifier(dataset)}__evaluation": {"config": {"control": evaluation_control, "curve": evaluation_curve}}}}
            launch(REPORT_JOB, dataset, todo, f"{dataset} (report)", config)
    if skipped:
        log("up to date, skipped: " + ", ".join(f"{name}" + (f" ({n} partitions)" if n > 1 else "") for name, n in skipped.items()) + "   (--force reruns them)")
    failed = sum(not r["success"] for r in runs)
    report = Lake(project.lake).files_dir(dataset, "report", "index.html")
    return {
        "report": str(report) if report.exists() else None,
        "dataset": dataset,
        "runs": len(runs),
        "failed_runs": failed,
        "ran": {r["partition"]: r["assets"] for r in runs},
        "skipped": skipped,
        "labels": label_pairs,
        "run_ids": [r["run_id"] for r in runs],
        "seconds": round(time.monotonic() - t0, 2),
        "estimated_seconds": round(planned.total_s, 1) if planned else None,
        "budget_seconds": budget_s,
        "not_used": not_used,
        "not_mined_over_budget": over_budget,
        "left_stale": left_stale,
    }


def evaluate_dataset(instance: DagsterInstance, config_path: Path, dataset: str, control: str, curve: bool = False, log=print) -> tuple[dict, dict | None]:
    """Materialize the dataset's `evaluation` asset again with `control`
    (and `curve`): (the run's summary, the figures it stored; None when the
    run failed). Training a control takes as long as the model's: said first.
    A rendered report with figures (boxes) is rendered again to show these
    (`done["report_rendered"]`); if that fails, the evaluation stands."""
    if control != "none":
        log(f"evaluating {dataset} beside the {control} control (a shuffled control trains like the model, once, then is kept) ...")
    done = run_dataset(instance, config_path, dataset, select=["evaluation"], force=True, evaluation_control=control, evaluation_curve=curve, log=log)
    if done["failed_runs"]:
        return done, None
    figures = stored_figures(instance, dataset)
    if instance.get_latest_materialization_event(asset_key(dataset, "report")) and Lake(load_config(config_path).lake).has_partition("ground_truth_boxes", dataset):
        done["report_rendered"] = not run_dataset(instance, config_path, dataset, select=["report"], force=True, log=log)["failed_runs"]
        if not done["report_rendered"]:
            log("the report was not rendered again (its run failed, above): it still shows the previous figures; the evaluation is stored")
    return done, figures


def _ingest_summary(instance: DagsterInstance, dataset: str, run_id: str, log) -> dict:
    """What ingestion did not use, by reason, in the default output (the
    file list is in the images asset's metadata)."""
    event = instance.get_latest_materialization_event(asset_key(dataset, "images"))
    if event is None or event.run_id != run_id:
        return {}
    meta = event.asset_materialization.metadata
    by_reason = dict(meta["skipped_by_reason"].value) if "skipped_by_reason" in meta else {}
    empty = list(meta["empty_labels"].value) if "empty_labels" in meta else []
    if by_reason or empty:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(by_reason.items(), key=lambda kv: -kv[1]))
        log(f"       not used: {sum(by_reason.values())}" + (f" ({reasons})" if reasons else "")
            + (f"; labels with no usable image: {', '.join(empty)}" if empty else "")
            + "; the list: the images asset's skipped_files in the UI, or --verbose")
    return {"files_by_reason": by_reason, "empty_labels": empty}


def _labels_gained(checkpoint: dict) -> list[str]:
    """Label keys a continued checkpoint has that the one it continued from
    did not (read from that checkpoint's training record; none if it is gone)."""
    record = Path(checkpoint["path"]).parent / checkpoint["continued_from"] / "training.json"
    try:
        before = set(json.loads(record.read_text())["labels"])
    except (OSError, ValueError, KeyError):
        return []
    return [k for k in checkpoint["labels"] if k not in before]


def _trained_checkpoint(instance: DagsterInstance, project, dataset: str, runs: list[dict], log) -> dict | None:
    """The checkpoint row, when this command's runs trained it (not reused
    it); says so when a time budget cut its training short."""
    event = instance.get_latest_materialization_event(asset_key(dataset, "checkpoint"))
    if event is None or event.run_id not in {r["run_id"] for r in runs}:
        return None
    reused = event.asset_materialization.metadata.get("reused")
    if reused is not None and reused.value:
        return None
    row = Lake(project.lake).read_partition("checkpoint", dataset).row(0, named=True)
    if row.get("stopped_by"):
        trained = row.get("trained_steps") or row["steps"]
        log(f"training: the weights of step {row['steps']}" + (f" of {trained} trained" if trained != row["steps"] else "") + f"; stopped by {row['stopped_by']}"
            + (f"; augmentation: {row['augmentation']}" if row.get("augmentation") else ""))
    wanted, got = row.get("unbudgeted_steps"), row.get("planned_steps")
    if wanted and got and got < wanted:
        new = " (the labels it was continued for had these steps alone)" if row["continued_from"] else ""
        log(f"warning: the budget cut training to {got} of its {wanted} planned steps{new}: held-out figures will show how much it learned; "
            f"--force with a longer --budget (or none) trains it again")
    return row


def _root_cause(err) -> str | None:
    """The innermost error's message: what the asset said, not Dagster's wrapping."""
    while err is not None and err.cause is not None:
        err = err.cause
    return err.message.strip() if err is not None else None


def _estimate_quietly(project, dataset: str, log) -> RunEstimate | None:
    try:
        planned = estimate(project, dataset)
    except DatasetError as e:
        log(f"estimate: not available ({e})")
        return None
    log(planned.describe())
    return planned
