"""Fitting and publishing a dataset's denoiser checkpoint.

Training state lives in ``<files>/checkpoints/in_progress`` and is saved
every few steps; a run that dies resumes there when it is started again with
the same data and options. A finished model is published, read-only, under
``<files>/checkpoints/<checkpoint_id>/`` (safetensors + JSON), where the id
is a hash of its weights: the tables downstream name the exact weights they
came from.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import polars as pl
import torch

from ..config.options import TrainingOptions
from ..denoisers.base import Denoiser, weights_digest
from ..denoisers.registry import load_denoiser, new_denoiser
from ..tensors import model_space
from .augmentation import continued_shift
from .loop import TrainResult, train
from .state import SNAPSHOTS_DIR, snapshots_dir
from .stopping import evidence_split

IN_PROGRESS = "in_progress"
TRAINING_FILE = "training.json"


@dataclass
class FittedCheckpoint:
    checkpoint_id: str
    path: Path
    model: Denoiser
    result: TrainResult
    labels: list[str]
    table: pl.DataFrame  # one row describing the checkpoint
    log: pl.DataFrame  # the training curve


def _weights_id(directory: Path) -> str:
    return weights_digest(directory)


def fit(
    dataset: str,
    images: pl.DataFrame,
    options: TrainingOptions,
    resolution: int,
    data_version: str,
    checkpoints_dir: Path,
    progress: Callable[[dict], None] | None = None,
    stop_after: int | None = None,
    previous: dict | None = None,
    keep_state: bool = False,
    ceiling_s: float | None = None,
    evidence_ids: list[str] | None = None,
) -> FittedCheckpoint:
    """Train the dataset's denoiser. With `previous` (the last published
    checkpoint's row) and data that changed since, training continues from
    those weights for `continue_steps`, new labels added to the model (their
    embeddings start at the null condition's), old labels kept, on all of the
    current images: new labels join without retraining from scratch.
    `ceiling_s`: the time ceiling of a run whose length follows the evidence
    (the asset's share of `run_target`; loop.train). When the evidence sets
    the length, its images are kept out of training (stopping.evidence_split)
    and their ids recorded; `evidence_ids` (a model's record, see
    `evidence_ids_of`) keeps exactly those out: a control stopped at its
    model's step trains on the same images."""
    labels = sorted(images["label_key"].unique().to_list())
    if not labels:
        raise ValueError(f"dataset {dataset!r} has no image to train on")
    # the label text words a text-conditioned backend's prompts (a frame of keys alone: the keys)
    texts = dict(zip(images["label_key"].to_list(), (images["label"] if "label" in images.columns else images["label_key"]).to_list()))
    train_rows = images.filter(pl.col("split") == "train")
    val_rows = images.filter(pl.col("split") == "val")
    base = continuation_base(previous, options, resolution, data_version)
    evidence_rows = None
    if base is None and (options.stops_early or evidence_ids is not None):
        train_rows, evidence_rows = evidence_split(train_rows, options.seed, evidence_ids)
    # the checks of an evidence run read the evidence images; a fixed-length run's diagnostics, the val split
    if evidence_rows is not None:
        read_rows = evidence_rows
    elif options.stops_early and base is None:
        read_rows = val_rows.clear()  # too few images to spare: the fixed fallback length (loop.train)
    else:
        read_rows = val_rows
    # The saved training state resumes when this identity matches: logging
    # and saving intervals are left out, so changing them keeps the state.
    identity = {"dataset": dataset, "data_version": data_version, "resolution": resolution, "options": options.identity_options()}
    if base is not None:
        model = load_denoiser(base["path"])
        model.add_labels(labels, label_texts=texts, template=options.prompt_template)
        run_options = options.model_copy(update={"steps": options.continue_steps, "seed": options.seed + int(base["steps"]),
                                                 # shift: auto decides on every step the checkpoint will have made, as its control does
                                                 **continued_shift(options, int(base["steps"]), len(train_rows))})
        meta = {**identity, "labels": model.labels, "continued_from": base["checkpoint_id"], "previous_steps": int(base["steps"])}
    else:
        torch.manual_seed(options.seed)
        model = new_denoiser(options, labels, resolution, label_texts=texts)
        run_options = options
        meta = {**identity, "labels": labels}
    if evidence_rows is not None:
        meta["evidence_images"] = len(evidence_rows)
        meta["evidence_ids"] = evidence_rows["image_id"].to_list()
    params = options.model_dump(mode="json")
    options = run_options
    result = train(
        model,
        model_space(model, train_rows["path"].to_list()),
        train_rows["label_key"].to_list(),
        train_rows["path"].to_list(),
        options,
        checkpoints_dir / IN_PROGRESS,
        meta=meta,
        val_pixels=model_space(model, read_rows["path"].to_list()),
        val_label_keys=read_rows["label_key"].to_list(),
        progress=progress,
        stop_after=stop_after,
        in_model_space=True,
        ceiling_s=ceiling_s,
    )
    return publish(dataset, model, result, meta, checkpoints_dir, params, keep_state)


def evidence_ids_of(checkpoint_path: str | Path) -> list[str] | None:
    """The images a checkpoint's evidence checks read (kept out of its
    training), from its record; None when the evidence did not set its length."""
    record = Path(checkpoint_path) / TRAINING_FILE
    return json.loads(record.read_text()).get("evidence_ids") if record.is_file() else None


def discard_state(checkpoints_dir: Path) -> None:
    """Forget an unfinished fit's saved state and snapshots, so the next fit
    starts at step 0 (a benchmark times whole trainings, never a resume)."""
    shutil.rmtree(Path(checkpoints_dir) / IN_PROGRESS, ignore_errors=True)
    shutil.rmtree(snapshots_dir(Path(checkpoints_dir) / IN_PROGRESS), ignore_errors=True)


def up_to_date(previous: dict | None, options: TrainingOptions, resolution: int, data_version: str) -> bool:
    """Whether the last published checkpoint was trained on this data with
    these options (all that change results): then it is the answer, and a
    run of the checkpoint asset reuses it instead of training again. A
    continued checkpoint counts: it was fitted to exactly this data."""
    if previous is None or previous.get("data_version") != data_version or previous.get("resolution") != resolution:
        return False
    if not Path(previous["path"]).exists():
        return False
    try:
        before = TrainingOptions(**json.loads(previous["params"]))
    except (ValueError, TypeError):  # options of an older diffmine: not comparable
        return False
    return before.result_options() == options.result_options()


def continuation_base(previous: dict | None, options: TrainingOptions, resolution: int, data_version: str, log=None) -> dict | None:
    """The previous checkpoint to continue from, or None to train afresh;
    `log` is told when only the network's options stand in the way."""
    if previous is None or options.on_new_data != "continue" or previous.get("data_version") == data_version:
        return None
    if previous.get("resolution") != resolution or not Path(previous["path"]).exists():
        return None
    changed = network_changes(previous, options)  # the backend among them
    if changed and log is not None:
        log(f"not continuing checkpoint {previous['checkpoint_id']}: its network was built with other options ("
            + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()) + "): training afresh")
    return None if changed else previous


def network_changes(previous: dict, options: TrainingOptions) -> dict:
    """What the options change in the network of the `previous` checkpoint
    (conditioning, channels, dropout, ...): {field: (before, now)}. A
    continuation would load that network as it was, so any change trains
    afresh; unreadable stored options count as a change."""
    try:
        before = json.loads(previous.get("params") or "")
    except (TypeError, ValueError):
        before = None
    return options.network_changes(before) if isinstance(before, dict) else {"stored options": ("unreadable", "these")}


def publish(dataset: str, model: Denoiser, result: TrainResult, meta: dict, checkpoints_dir: Path, params: dict, keep_state: bool = False) -> FittedCheckpoint:
    staging = checkpoints_dir / f".staging-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    model.save(staging)
    snapshots = snapshots_dir(checkpoints_dir / IN_PROGRESS)
    if snapshots.is_dir():
        shutil.copytree(snapshots, staging / SNAPSHOTS_DIR)
        if result.best_step < result.steps:
            # the evidence published an earlier check: the curve ends at the published weights
            for d in (staging / SNAPSHOTS_DIR).iterdir():
                if d.name.startswith("step-") and int(d.name.split("-")[1]) > result.best_step:
                    shutil.rmtree(d)
            model.save(staging / SNAPSHOTS_DIR / f"step-{result.best_step:07d}")
    (staging / TRAINING_FILE).write_text(json.dumps({**meta, "params": params, "steps": result.best_step, "trained_steps": result.steps,
                                                     "stopped_by": result.stopped_by, "augmentation": result.augmentation.describe(), "log": result.log, "checks": result.diagnostics}, indent=2))
    ckpt_id = _weights_id(staging)
    final = checkpoints_dir / ckpt_id
    if final.exists():  # the same weights again (a re-run of a finished fit)
        shutil.rmtree(staging)
    else:
        os.replace(staging, final)
    if result.finished and not keep_state:
        # a finished fit, published: its resumable state and snapshots (copied
        # above) are done with; left behind, a later fit could resume them
        # (`keep_state`: the caller wants exactly that, a second fit that finds it finished)
        discard_state(checkpoints_dir)
    last = result.log[-1] if result.log else {}
    gain = published_check(result)["bands"] if result.diagnostics else []
    cfg = model.config()
    table = pl.DataFrame(
        [
            {
                "dataset": dataset,
                "checkpoint_id": ckpt_id,
                "path": str(final),
                "backend": cfg["backend"],
                "labels": list(meta["labels"]),
                "resolution": meta["resolution"],
                "parameters": cfg["parameters"],
                # the published weights' steps: the best evidence check's, else the last
                "steps": result.best_step + meta.get("previous_steps", 0),
                "trained_steps": result.steps + meta.get("previous_steps", 0),
                "stopped_by": result.stopped_by,
                "augmentation": result.augmentation.describe(),
                "shift_used": result.augmentation.shift,
                "resumed_from_step": result.resumed_from,
                "continued_from": meta.get("continued_from"),
                "seconds": round(result.seconds, 2),
                "final_loss": last.get("loss"),
                "final_val_loss": last.get("val_loss"),
                # held-out L(null) - L(own label) per timestep band: did the model learn the labels?
                "label_gain": json.dumps(gain),
                "planned_steps": result.planned_steps,
                "unbudgeted_steps": result.unbudgeted_steps,
                "data_version": meta["data_version"],
                "seed": params["seed"],
                "params": json.dumps(params, sort_keys=True),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        ]
    )
    log = pl.DataFrame(result.log, schema={"step": pl.Int64, "loss": pl.Float64, "val_loss": pl.Float64, "images_per_s": pl.Float64, "elapsed_s": pl.Float64, "eta_s": pl.Float64}).with_columns(
        pl.lit(dataset).alias("dataset"), pl.lit(ckpt_id).alias("checkpoint_id")
    )
    return FittedCheckpoint(ckpt_id, final, model, result, meta["labels"], table, log)


def published_check(result: TrainResult) -> dict:
    """The diagnostics of the published weights: the best check's when the
    evidence chose them, else the last."""
    return next((d for d in result.diagnostics if d["step"] == result.best_step), result.diagnostics[-1])


def load_checkpoint(path: str | Path) -> Denoiser:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} is missing; re-materialize the checkpoint asset")
    return load_denoiser(path)


class CheckpointMismatch(ValueError):
    """Rows name weights that cannot be loaded: mixed, or no longer on disk."""


def checkpoint_of_rows(rows: pl.DataFrame, current: dict, checkpoints_dir: Path) -> Denoiser:
    """The checkpoint that computed `rows` (their `checkpoint_id`), loaded
    from the published folder of that id: features of patches must come from
    the model that found the patches, even after the dataset's current
    checkpoint moved on."""
    ids = sorted(set(rows["checkpoint_id"].to_list())) if len(rows) else [current["checkpoint_id"]]
    if len(ids) != 1:
        raise CheckpointMismatch(f"the rows come from several checkpoints {ids}; re-materialize them with one")
    wanted = ids[0]
    path = Path(current["path"]) if wanted == current["checkpoint_id"] else checkpoints_dir / wanted
    if not path.exists():
        raise CheckpointMismatch(
            f"the rows were computed with checkpoint {wanted}, whose weights are gone from {path} "
            f"(the current checkpoint is {current['checkpoint_id']}): re-materialize image_typicality and patch_typicality first"
        )
    return load_denoiser(path)


def snapshots_of(checkpoint_path: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of the weights a checkpoint kept along its training,
    in order (see training.snapshots)."""
    root = Path(checkpoint_path) / SNAPSHOTS_DIR
    if not root.is_dir():
        return []
    return sorted((int(d.name.split("-")[1]), d) for d in root.iterdir() if d.is_dir() and d.name.startswith("step-"))
