"""Typicality results as tables (polars), with every parameter that changed
them recorded beside them."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np
import polars as pl
import torch

from .datasets.spec import PatchOptions, TypicalityOptions
from .patches import image_windows
from .typicality import LabelScores, TypicalityResult


def save_array(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
    os.replace(tmp, path)
    return path


def load_array(path: str | Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


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


def label_matrix_table(images: pl.DataFrame, label_key: str, scores: LabelScores, checkpoint_id: str) -> pl.DataFrame:
    """One row per (image, label): the image's typicality under that label,
    how many samples the entry got, whether it reached the final, and
    whether it is the image's predicted label."""
    ids = images["image_id"].to_list()
    L = len(scores.labels)
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
            "checkpoint_id": checkpoint_id,
        }
    )


def patch_table(typ: pl.DataFrame, replicate_maps: np.ndarray, opts: PatchOptions) -> tuple[pl.DataFrame, int]:
    """Top, random and least typical windows of a label; returns the table and
    the number of images skipped for being smaller than the window."""
    rng = np.random.default_rng(opts.seed)
    records = {"top": [], "bottom": [], "random": []}
    skipped = 0
    for row in typ.iter_rows(named=True):
        maps = torch.from_numpy(replicate_maps[row["map_index"]].astype(np.float32))
        found = image_windows(maps, row["height"], row["width"], opts.window_px, opts.stride_px, opts.per_image, rng)
        if found is None:
            skipped += 1
            continue
        for selection, windows in (("top", found.top), ("bottom", found.bottom), ("random", found.random)):
            for rank, win in enumerate(windows, start=1):
                records[selection].append((row["image_id"], row["path"], win.x0, win.y0, win.x0 + opts.window_px, win.y0 + opts.window_px, win.score, win.stderr, rank))
    cols = ["image_id", "path", "x0", "y0", "x1", "y1", "typicality", "stderr", "rank_in_image"]
    frames = []
    for selection, recs in records.items():
        df = pl.DataFrame(recs, schema=cols, orient="row")
        if selection == "top":
            df = df.sort("typicality", descending=True).head(opts.per_label)
        elif selection == "bottom":
            df = df.sort("typicality").head(opts.per_label)
        else:
            df = df.sample(n=min(opts.per_label, len(df)), seed=opts.seed) if len(df) else df
        frames.append(df.with_columns(pl.lit(selection).alias("selection"), pl.int_range(1, pl.len() + 1).alias("rank_in_label")))
    first = typ.row(0, named=True) if len(typ) else {}
    out = pl.concat(frames).with_columns(
        pl.lit(first.get("dataset")).alias("dataset"),
        pl.lit(first.get("label")).alias("label"),
        pl.lit(first.get("label_key")).alias("label_key"),
        pl.lit(first.get("checkpoint_id")).alias("checkpoint_id"),
        pl.lit(opts.window_px, dtype=pl.Int32).alias("window_px"),
        pl.lit(opts.stride_px, dtype=pl.Int32).alias("stride_px"),
        pl.lit(json.dumps(opts.model_dump(), sort_keys=True)).alias("params"),
        pl.lit(first.get("params")).alias("typicality_params"),
    )
    order = ["dataset", "label", "label_key", "selection", "rank_in_label", "image_id", "rank_in_image", "x0", "y0", "x1", "y1", "typicality", "stderr", "path", "checkpoint_id", "window_px", "stride_px", "params", "typicality_params"]
    return out.select(order).with_columns(pl.col("rank_in_label", "rank_in_image", "x0", "y0", "x1", "y1").cast(pl.Int32)), skipped
