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
from ..training.checkpoints import FittedCheckpoint, fit

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


def fit_shuffled_control(dataset: str, images: pl.DataFrame, options, resolution: int, data_version: str, controls_dir: Path, progress: Callable[[dict], None] | None = None) -> FittedCheckpoint:
    """Train the shuffled-label control with the dataset's own training
    options. Its finished state is kept under `controls_dir` (keep_state),
    so a second call with the same data and options finds the run finished
    and trains nothing."""
    shuffled = shuffled_labels(images, options.seed)
    return fit(dataset, shuffled, options, resolution, f"{data_version}-shuffled", controls_dir / "shuffled", progress, keep_state=True)


def control_recipe(training, checkpoint: dict):
    """The training options a control gets: the dataset's, with the steps
    the checkpoint actually trained (its record, whatever fixed them: a
    time budget, epochs, a continuation's extra steps) and no time budget,
    so the control has the model's budget in steps on any machine and load."""
    steps = checkpoint.get("steps")
    return training.model_copy(update={"steps": int(steps), "time_budget": None}) if steps else training


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
    recipe = control_recipe(spec.training, checkpoint)
    log(f"control: the same training ({recipe.steps} steps, the checkpoint's) on the same images with the labels shuffled across them (trained once, then kept) ...")

    def progress(row: dict) -> None:
        if row.get("step", 0) % 100 == 0 and "loss" in row:
            log(f"  control step {row['step']}/{row['total_steps']}")

    fitted = fit_shuffled_control(spec.name, images, recipe, spec.options.resolution, checkpoint["data_version"], controls_dir, progress)
    return fitted.model, fitted.path, fitted.result.steps
