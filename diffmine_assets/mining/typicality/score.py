"""The typicality sequence, written once: `score_labels`.

Every caller that needs typicality of images (the `image_typicality` asset,
the controls of the evaluation, the localisation curve, the scoring of
translations, the benchmarks) calls `score_labels`; it reads, like a
diffusers pipeline's `__call__`, as numbered steps: the noise set, the images
in model space, the maps, the label matrix. The tables of its results are
made by `ScoredGroup.table` and `ScoredGroup.matrix_table`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import polars as pl
import torch

from ..config.options import TypicalityOptions
from ..denoisers.base import Denoiser
from ..tensors import model_space
from .estimator import NoiseSet, TypicalityResult, dataset_noise, matrix_noise_set, pilot_rows, typicality_maps
from .label_matrix import LabelScores, label_scores
from .tables import image_typicality_table, label_matrix_table


@dataclass
class ScoredGroup:
    """Images scored under the same labels (the first is the group's own:
    the label its `image_typicality` rows are under)."""

    labels: tuple[str, ...]
    index: np.ndarray  # the group's positions in the input
    rows: pl.DataFrame | None  # its rows of the input frame (None when the input was a tensor)
    opts: TypicalityOptions
    result: TypicalityResult  # maps (B, L, G, h, w) under `labels`
    matrix: LabelScores | None = None  # the `covered` images under every label of the model
    covered: np.ndarray | None = None  # positions in the group of the matrix's images

    @property
    def key(self) -> str:
        return self.labels[0]

    @property
    def maps(self) -> np.ndarray:
        """(B, h, w) mean maps under the own label."""
        return self.result.maps[:, 0].numpy()

    @property
    def replicate_maps(self) -> np.ndarray:
        """(B, G, h, w) per-replicate maps under the own label (patches' standard errors)."""
        return self.result.replicate_maps[:, 0].numpy()

    @property
    def seconds(self) -> float:
        return self.result.seconds + (self.matrix.seconds if self.matrix is not None else 0.0)

    def table(self, checkpoint_id: str, map_path: str | Path = "-") -> pl.DataFrame:
        """The `image_typicality` rows of the group."""
        return image_typicality_table(self.rows, self.key, self.result, self.opts, checkpoint_id, map_path)

    def matrix_table(self, checkpoint_id: str) -> pl.DataFrame | None:
        """The `label_matrix` rows of the covered images, if any."""
        if self.matrix is None:
            return None
        return label_matrix_table(self.rows[self.covered.tolist()], self.key, self.matrix, self.opts, checkpoint_id)


def pilot_noise(model: Denoiser, images: pl.DataFrame, opts: TypicalityOptions) -> NoiseSet:
    """The noise set of a dataset: drawn by a pilot on a few of its images
    (chosen by id, one per label first), so every label partition of the
    dataset, and every label of an image, is scored on the same draws."""
    rows = pilot_rows(images)
    return dataset_noise(model, model_space(model, rows["path"].to_list()), rows["label_key"].to_list(), opts)


def _groups(images: pl.DataFrame | torch.Tensor, under) -> list[tuple[tuple[str, ...], np.ndarray]]:
    if under is None:
        if isinstance(images, torch.Tensor):
            raise ValueError("images given as a tensor need `under`: the labels to score each under")
        under = images["label_key"].to_list()
    tuples = [(u,) if isinstance(u, str) else tuple(u) for u in under]
    if len(tuples) != len(images):
        raise ValueError(f"`under` names labels for {len(tuples)} images; there are {len(images)}")
    return [(labels, np.array([i for i, t in enumerate(tuples) if t == labels], dtype=np.int64)) for labels in sorted(set(tuples))]


def _covered(rows: pl.DataFrame | None, matrix: str, n: int) -> np.ndarray:
    if matrix == "all":
        return np.arange(n)
    if matrix == "held-out":
        if rows is None:
            raise ValueError("matrix 'held-out' needs the images' rows (their split)")
        return (rows["split"] == "val").to_numpy().nonzero()[0]
    return np.zeros(0, dtype=np.int64)


def score_labels(
    model: Denoiser,
    images: pl.DataFrame | torch.Tensor,
    opts: TypicalityOptions,
    *,
    under: Sequence[str | Sequence[str]] | None = None,
    pilot: pl.DataFrame | None = None,
    noise: NoiseSet | None = None,
    matrix: str = "none",
    progress: Callable[[int, int], None] | None = None,
) -> list[ScoredGroup]:
    """Typicality of `images` under labels, against the null condition
    (METHOD.md section 2), as maps, and, for the images `matrix` selects,
    under every label of the model.

    images: rows of the images table (path, label_key, split), loaded and
        encoded here; or a tensor already in model space.
    under: per image, the label (or labels) its maps are under; default its
        own (`label_key`).
    pilot: the dataset's images whose pilot draws the noise set, so every
        partition of the dataset sees the same draws; default: the images
        themselves (the estimator's own pilot).
    noise: a noise set already drawn (wins over `pilot`).
    matrix: "all", "held-out" (split 'val') or "none", as the option
        `typicality.label_matrix`.

    Returns one group per distinct `under` (in sorted order), each holding
    its images in their input order.
    """
    # 1. The noise set every image is scored with: (eps, t) pairs and their
    #    importance weights, drawn once for the dataset.
    if noise is None and pilot is not None:
        noise = pilot_noise(model, pilot, opts)
    groups = []
    for labels, index in _groups(images, under):
        rows = images[index.tolist()] if isinstance(images, pl.DataFrame) else None
        # 2. The group's images in the space the model denoises.
        x0 = model_space(model, rows["path"].to_list()) if rows is not None else images[torch.from_numpy(index)]
        # 3. Maps under the group's labels against the null condition: the
        #    same draws for every label, one null pass shared by all.
        result = typicality_maps(model, x0, list(labels), opts, noise=noise, progress=progress)
        # 4. The label matrix: the covered images under every label of the
        #    model, reusing the null and own-label passes of step 3, or, where
        #    the matrix has its own timesteps, its own two passes (counted as
        #    the matrix's cost).
        covered = _covered(rows, matrix, len(x0))
        scores = None
        if len(model.labels) > 1 and len(covered):
            m_noise = matrix_noise_set(model, tuple(x0.shape[1:]), opts)
            own = result.take(covered) if m_noise is None else typicality_maps(model, x0[covered], [labels[0]], opts, noise=m_noise)
            scores = label_scores(model, x0[covered], own, labels[0], list(model.labels), opts)
            if m_noise is not None:
                scores = replace(scores, forward_rows=scores.forward_rows + own.forward_rows, seconds=scores.seconds + own.seconds)
        groups.append(ScoredGroup(labels, index, rows, opts, result, scores, covered if scores is not None else None))
    return groups
