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

from .checkpoints import FittedCheckpoint, fit

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
    options. Its state is kept under `controls_dir`, so a second call with
    the same data and options finds the run finished and trains nothing."""
    shuffled = shuffled_labels(images, options.seed)
    return fit(dataset, shuffled, options, resolution, f"{data_version}-shuffled", controls_dir / "shuffled", progress)
