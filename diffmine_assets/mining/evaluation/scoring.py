"""A model scored on images the way the graph scores a dataset's own: the
controls of the evaluation (which have no stored tables) and the held-out
images of the training benchmark."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ..patches import patch_table
from ..typicality.score import score_labels
from .localisation import localisation_by_label
from .metrics import classification_figures, classification_items, typicality_figures, typicality_items


@dataclass
class ModelScores:
    figures: dict
    seconds: float  # typicality and the label matrix
    patches: pl.DataFrame | None = None  # the patch tables the box figures were computed on (with boxes)
    images: pl.DataFrame | None = None  # the scored images, in the order of the maps (with boxes)
    items: pl.DataFrame | None = None  # per image and figure: value and chance (what an interval resamples)


def score_model(model, images: pl.DataFrame, boxes: pl.DataFrame | None, typ_opts, patch_opts, *,
                dataset_images: pl.DataFrame | None = None, checkpoint_id: str = "control") -> ModelScores:
    """`images` scored under their true labels with the graph's estimator:
    the held-out accuracy of the label matrix and, where there are `boxes`,
    the figures of the own-label maps and their patches. `dataset_images`
    (default: `images`) is the dataset the noise is drawn from and the
    accuracy counted against, as in the graph."""
    everything = dataset_images if dataset_images is not None else images
    groups = score_labels(model, images, typ_opts, pilot=everything, matrix="held-out")
    matrices = [m for m in (g.matrix_table(checkpoint_id) for g in groups) if m is not None]
    figures = classification_figures(pl.concat(matrices), everything) if matrices else {}
    items = [classification_items(pl.concat(matrices), everything)] if matrices else []
    seconds = sum(g.seconds for g in groups)
    if boxes is None:
        return ModelScores(figures, seconds, items=pl.concat(items) if items else None)
    ordered = pl.concat([g.rows for g in groups])
    patches = pl.concat([patch_table(g.table(checkpoint_id), g.replicate_maps, patch_opts)[0] for g in groups])
    maps = {g.key: g.maps for g in groups}
    items.append(typicality_items(patches, boxes, ordered, maps))
    figures.update(typicality_figures(patches, boxes, ordered, maps, items[-1]))
    figures.update(localisation_by_label(maps, ordered, boxes))
    return ModelScores(figures, seconds, patches, ordered, pl.concat(items))
