"""Typicality results as tables (polars), with every parameter that changed
them recorded beside them: the `image_typicality` and `label_matrix` tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from ..config.options import TypicalityOptions
from .estimator import TypicalityResult
from .label_matrix import LabelScores


def image_typicality_table(images: pl.DataFrame, label_key: str, result: TypicalityResult, opts: TypicalityOptions, checkpoint_id: str, map_path: Path) -> pl.DataFrame:
    """One row per image: its typicality under its own label (the first label
    of `result`), with every parameter that made it."""
    scores = result.image_scores.numpy()[:, 0]
    stderr = result.image_stderr.numpy()[:, 0]
    params = json.dumps(opts.model_dump(), sort_keys=True)
    h, w = result.replicate_maps.shape[-2:]
    return images.select("dataset", "label", "label_key", "image_id", "path", "width", "height").with_columns(
        pl.Series("typicality", scores, dtype=pl.Float64),
        pl.Series("stderr", stderr, dtype=pl.Float64),
        pl.Series("map_index", np.arange(len(images)), dtype=pl.Int32),
        pl.lit(str(map_path)).alias("map_path"),
        pl.lit(h, dtype=pl.Int32).alias("map_height"),
        pl.lit(w, dtype=pl.Int32).alias("map_width"),
        pl.lit(opts.n_samples, dtype=pl.Int32).alias("n_samples"),
        pl.lit(opts.t_min).alias("t_min"),
        pl.lit(opts.t_max).alias("t_max"),
        pl.lit(opts.seed, dtype=pl.Int64).alias("seed"),
        pl.lit(opts.sampling).alias("sampling"),
        pl.lit(result.precision).alias("precision"),
        pl.lit(json.dumps([round(q, 6) for q in result.profile])).alias("t_profile"),
        pl.lit(checkpoint_id).alias("checkpoint_id"),
        pl.lit(params).alias("params"),
    )


def label_matrix_table(images: pl.DataFrame, label_key: str, scores: LabelScores, opts: TypicalityOptions, checkpoint_id: str) -> pl.DataFrame:
    """One row per (image, label): the image's typicality under that label,
    how many samples the entry got, whether it reached the final, and
    whether it is the image's predicted label, with the timesteps it was
    scored at (the matrix's own range, which differs from the maps') and
    every option that made it."""
    ids = images["image_id"].to_list()
    L = len(scores.labels)
    t_lo, t_hi = opts.matrix_range or (opts.t_min, opts.t_max)
    predicted = np.zeros((len(ids), L), dtype=bool)
    predicted[np.arange(len(ids)), scores.predicted.numpy()] = True
    return pl.DataFrame(
        {
            "dataset": images["dataset"][0] if len(images) else "",
            "image_id": np.repeat(ids, L),
            "label_key": label_key,
            "under_label_key": scores.labels * len(ids),
            "typicality": scores.scores.numpy().reshape(-1).astype(np.float64),
            "stderr": scores.stderr.numpy().reshape(-1).astype(np.float64),
            "n_samples": scores.samples.numpy().reshape(-1).astype(np.int32),
            "finalist": scores.finalist.numpy().reshape(-1),
            "predicted": predicted.reshape(-1),
            "t_min": t_lo,
            "t_max": t_hi,
            "seed": opts.seed,
            "checkpoint_id": checkpoint_id,
            "params": json.dumps(opts.model_dump(), sort_keys=True),
        },
        schema_overrides={"t_min": pl.Float64, "t_max": pl.Float64, "seed": pl.Int64},
    )
