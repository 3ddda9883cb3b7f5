"""Fitting and publishing a dataset's denoiser checkpoint.

Training state lives in ``<files>/checkpoints/in_progress`` and is saved
every few steps; a run that dies resumes there when it is started again with
the same data and options. A finished model is published, read-only, under
``<files>/checkpoints/<checkpoint_id>/`` (safetensors + JSON), where the id
is a hash of its weights: the tables downstream name the exact weights they
came from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import polars as pl
import torch

from .datasets.spec import TrainingOptions
from .denoisers import load_denoiser, new_denoiser
from .denoisers.base import Denoiser
from .denoisers.tiny import WEIGHTS_FILE
from .tensors import load_pixels
from .training import TrainResult, train

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
    h = hashlib.sha256((directory / WEIGHTS_FILE).read_bytes())
    return h.hexdigest()[:12]


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
) -> FittedCheckpoint:
    """Train the dataset's denoiser. With `previous` (the last published
    checkpoint's row) and data that changed since, training continues from
    those weights for `continue_steps`, new labels added to the model (their
    embeddings start at the null condition's), old labels kept, on all of the
    current images: new labels join without retraining from scratch."""
    labels = sorted(images["label_key"].unique().to_list())
    if not labels:
        raise ValueError(f"dataset {dataset!r} has no image to train on")
    train_rows = images.filter(pl.col("split") == "train")
    val_rows = images.filter(pl.col("split") == "val")
    base = continuation_base(previous, options, resolution, data_version)
    if base is not None:
        model = load_denoiser(base["path"])
        model.add_labels(labels)
        run_options = options.model_copy(update={"steps": options.continue_steps, "seed": options.seed + int(base["steps"])})
        meta = {"dataset": dataset, "data_version": data_version, "labels": model.labels, "resolution": resolution,
                "options": options.model_dump(), "continued_from": base["checkpoint_id"], "previous_steps": int(base["steps"])}
    else:
        torch.manual_seed(options.seed)
        model = new_denoiser(options, labels, resolution)
        run_options = options
        meta = {"dataset": dataset, "data_version": data_version, "labels": labels, "resolution": resolution, "options": options.model_dump()}
    options = run_options
    result = train(
        model,
        load_pixels(train_rows["path"].to_list(), resolution),
        train_rows["label_key"].to_list(),
        train_rows["path"].to_list(),
        options,
        checkpoints_dir / IN_PROGRESS,
        meta=meta,
        val_pixels=load_pixels(val_rows["path"].to_list(), resolution),
        val_label_keys=val_rows["label_key"].to_list(),
        progress=progress,
        stop_after=stop_after,
    )
    return publish(dataset, model, result, meta, checkpoints_dir)


def continuation_base(previous: dict | None, options: TrainingOptions, resolution: int, data_version: str) -> dict | None:
    """The previous checkpoint to continue from, or None to train afresh."""
    if previous is None or options.on_new_data != "continue":
        return None
    if previous.get("data_version") == data_version or previous.get("backend") != options.backend:
        return None
    if previous.get("resolution") != resolution or not Path(previous["path"]).exists():
        return None
    return previous


def publish(dataset: str, model: Denoiser, result: TrainResult, meta: dict, checkpoints_dir: Path) -> FittedCheckpoint:
    staging = checkpoints_dir / f".staging-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    model.save(staging)
    (staging / TRAINING_FILE).write_text(json.dumps({**meta, "steps": result.steps, "log": result.log}, indent=2))
    ckpt_id = _weights_id(staging)
    final = checkpoints_dir / ckpt_id
    if final.exists():  # the same weights again (a re-run of a finished fit)
        shutil.rmtree(staging)
    else:
        os.replace(staging, final)
    last = result.log[-1] if result.log else {}
    gain = result.diagnostics[-1]["bands"] if result.diagnostics else []
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
                "steps": result.steps + meta.get("previous_steps", 0),
                "resumed_from_step": result.resumed_from,
                "continued_from": meta.get("continued_from"),
                "seconds": round(result.seconds, 2),
                "final_loss": last.get("loss"),
                "final_val_loss": last.get("val_loss"),
                # held-out L(null) - L(own label) per timestep band: did the model learn the labels?
                "label_gain": json.dumps(gain),
                "planned_steps": result.planned_steps,
                "data_version": meta["data_version"],
                "seed": meta["options"]["seed"],
                "params": json.dumps(meta["options"], sort_keys=True),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        ]
    )
    log = pl.DataFrame(result.log, schema={"step": pl.Int64, "loss": pl.Float64, "val_loss": pl.Float64, "images_per_s": pl.Float64, "elapsed_s": pl.Float64, "eta_s": pl.Float64}).with_columns(
        pl.lit(dataset).alias("dataset"), pl.lit(ckpt_id).alias("checkpoint_id")
    )
    return FittedCheckpoint(ckpt_id, final, model, result, meta["labels"], table, log)


def load_checkpoint(path: str | Path) -> Denoiser:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} is missing; re-materialize the checkpoint asset")
    return load_denoiser(path)
