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


def control_model(kind: str, spec, checkpoint: dict, images: pl.DataFrame, controls_dir: Path, log: Callable[[str], None] = print) -> tuple[Denoiser, Path | None]:
    """(model, folder of its published checkpoint or None) of the control of
    `kind` for the dataset's `checkpoint`: `shuffled` (trained the same way
    on permuted labels; trained once and kept under `controls_dir`) or
    `untrained` (what the backend calls untrained: the same network never
    trained, or the pretrained model it was finetuned from)."""
    if kind == "untrained":
        return untrained_like(checkpoint["path"], spec.training), None
    if kind != "shuffled":
        raise ValueError(f"unknown control {kind!r}; controls are shuffled, untrained, none")
    log("control: the same training on the same images with the labels shuffled across them (trained once, then kept) ...")

    def progress(row: dict) -> None:
        if row.get("step", 0) % 100 == 0 and "loss" in row:
            log(f"  control step {row['step']}/{row['total_steps']}")

    fitted = fit_shuffled_control(spec.name, images, spec.training, spec.options.resolution, checkpoint["data_version"], controls_dir, progress)
    return fitted.model, fitted.path
