"""Controls: models trained exactly like the real one that cannot have learnt
the labels, so a quality figure can be read against what the same training
gives when the labels carry no information.

`shuffled`: the dataset's labels permuted across its images (each label keeps
its number of images; the permutation is seeded), so every label is a random
sample of the collection. Scored under the images' true labels, whatever it
finds is what training, architecture and estimator give for free.
`untrained`: the same architecture, never trained (a weaker control, kept as
a third row).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from ..denoisers.base import Denoiser
from ..denoisers.registry import untrained_like
from ..training.checkpoints import FittedCheckpoint, evidence_ids_of, fit

CONTROL_SEED_OFFSET = 7_777


def shuffled_labels(images: pl.DataFrame, seed: int) -> pl.DataFrame:
    """`images` with `label` and `label_key` permuted across the training
    images and, apart, across the held-out ones (so each split keeps its
    label counts)."""
    out = []
    for split, rows in images.group_by("split", maintain_order=True):
        perm = np.random.default_rng([seed, CONTROL_SEED_OFFSET, len(out)]).permutation(len(rows))
        labels = rows.select("label", "label_key")[perm.tolist()]
        out.append(rows.with_columns(labels["label"].alias("label"), labels["label_key"].alias("label_key")))
    return pl.concat(out).sort("label_key", "relpath") if out else images


def fit_shuffled_control(dataset: str, images: pl.DataFrame, options, resolution: int, data_version: str, controls_dir: Path,
                         progress: Callable[[dict], None] | None = None, stop_after: int | None = None,
                         evidence_ids: list[str] | None = None) -> FittedCheckpoint:
    """Train the shuffled-label control with the dataset's own training
    options (until `stop_after`, when given; without the images of
    `evidence_ids`, the model's evidence, when given). Its state is kept under
    `controls_dir` (keep_state), so a second call with the same data and
    options finds the run done and trains nothing."""
    shuffled = shuffled_labels(images, options.seed)
    return fit(dataset, shuffled, options, resolution, f"{data_version}-shuffled", controls_dir / "shuffled", progress, keep_state=True, stop_after=stop_after,
               evidence_ids=evidence_ids)


def control_recipe(training, checkpoint: dict):
    """(options, stop_after) of a control: the dataset's training options
    with the steps the checkpoint actually trained (its record, whatever
    fixed them: a time budget, epochs, a continuation's extra steps) and no
    time budget, so the control has the model's budget in steps on any
    machine and load. A checkpoint whose length the evidence set is the
    weights of its best check: the control follows the same learning-rate
    schedule (the ceiling's steps) and stops at that step. It is never
    stopped by evidence of its own, which a control that cannot learn the
    labels would give at once."""
    steps = checkpoint.get("steps")
    if not steps:
        return training, None
    if training.shift == "auto" and checkpoint.get("shift_used") is not None:
        # the model's resolved shift: a control deciding for itself could decide otherwise (a continuation, a budget never applied)
        training = training.model_copy(update={"shift": float(checkpoint["shift_used"])})
    planned = checkpoint.get("planned_steps")
    if checkpoint.get("unbudgeted_steps") == 0 and planned and not checkpoint.get("continued_from"):
        return training.model_copy(update={"steps": int(planned), "time_budget": None}), int(steps)
    return training.model_copy(update={"steps": int(steps), "time_budget": None}), None


def control_model(kind: str, spec, checkpoint: dict, images: pl.DataFrame, controls_dir: Path,
                  log: Callable[[str], None] = print) -> tuple[Denoiser, Path | None, int | None]:
    """(model, folder of its published checkpoint or None, steps it trained
    or None) of the control of `kind` for the dataset's `checkpoint`:
    `shuffled` (trained from scratch on permuted labels for the checkpoint's
    recorded steps, `control_recipe`; trained once and kept under
    `controls_dir`) or `untrained` (what the backend calls untrained: the
    same network never trained, or the pretrained model it was finetuned from)."""
    if kind == "untrained":
        return untrained_like(checkpoint["path"], spec.training), None, None
    if kind != "shuffled":
        raise ValueError(f"unknown control {kind!r}; controls are shuffled, untrained, none")
    recipe, stop_after = control_recipe(spec.training, checkpoint)
    length = f"{recipe.steps} steps, the checkpoint's" if stop_after is None else f"the checkpoint's schedule of {recipe.steps} steps, stopped at its step {stop_after}"
    log(f"control: the same training ({length}) on the same images with the labels shuffled across them (trained once, then kept) ...")

    def progress(row: dict) -> None:
        if row.get("step", 0) % 100 == 0 and "loss" in row:
            log(f"  control step {row['step']}/{row['total_steps']}")

    evidence = evidence_ids_of(checkpoint["path"]) if stop_after is not None else None
    fitted = fit_shuffled_control(spec.name, images, recipe, checkpoint.get("resolution") or spec.options.resolution, checkpoint["data_version"], controls_dir, progress, stop_after, evidence)
    return fitted.model, fitted.path, fitted.result.steps
