"""Parallel mining (METHOD.md section 5): the same element followed across labels.

A translated set is one source image and its versions under every label (the
image itself under its own label, its translations under the others). Each
version's typicality map is the one under its own label; a location's score is
the median over labels of the window means, so a location scores high only if
it is typical of every label in its translated form. The best locations are
described by their features in every version, concatenated in label order,
clustered with k-means, and the clusters ranked by median typicality: each
cluster is an element seen the same way across labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from ..clustering import cluster_patches
from ..config.options import ClusterOptions, FeatureOptions, PatchOptions
from ..denoisers.base import Denoiser
from ..features import feature_maps, region_mean
from ..patches import MAX_WORK_SIDE, greedy_non_overlapping, upsample, window_means
from ..tensors import model_space


@dataclass
class TranslatedSet:
    image_id: str
    source_key: str
    width: int
    height: int
    paths: dict[str, str]  # label key -> the version's image (model resolution for translations)
    maps: dict[str, np.ndarray]  # label key -> (h, w) typicality map under that label


def location_scores(maps: torch.Tensor, height: int, width: int, window_px: int, stride_px: int) -> tuple[torch.Tensor, float, int, int]:
    """Window means of each label's map (L, ny, nx) at the image's pixel
    scale (capped at MAX_WORK_SIDE like the patches), with the scale, window
    and stride in working pixels."""
    scale = max(1.0, max(height, width) / MAX_WORK_SIDE)
    wh, ww = max(1, round(height / scale)), max(1, round(width / scale))
    k = min(max(1, round(window_px / scale)), wh, ww)
    s = max(1, round(stride_px / scale))
    return window_means(upsample(maps, wh, ww), k, s), scale, k, s


def parallel_locations(sets: list[TranslatedSet], labels: list[str], patch_opts: PatchOptions, top: int) -> pl.DataFrame:
    """The `top` locations by median typicality over labels, the best
    non-overlapping windows of each set first: one row per (location, label)."""
    found = []
    for s in sets:
        maps = torch.stack([torch.from_numpy(np.ascontiguousarray(s.maps[k], dtype=np.float32)) for k in labels])
        scores, scale, k, st = location_scores(maps, s.height, s.width, patch_opts.window_px, patch_opts.stride_px)
        median = np.median(scores.numpy(), axis=0)  # the mean of the middle two for an even count
        for y, x in greedy_non_overlapping(median, k, st, patch_opts.per_image):
            iy, ix = y // st, x // st
            y0, x0 = int(round(y * scale)), int(round(x * scale))
            found.append((float(median[iy, ix]), s, x0, y0, [float(scores[j, iy, ix]) for j in range(len(labels))]))
    found.sort(key=lambda f: -f[0])
    rows = []
    for rank, (med, s, x0, y0, per_label) in enumerate(found[:top], start=1):
        for j, key in enumerate(labels):
            rows.append({
                "location": rank, "image_id": s.image_id, "source_label_key": s.source_key,
                "x0": x0, "y0": y0, "x1": x0 + patch_opts.window_px, "y1": y0 + patch_opts.window_px,
                "width": s.width, "height": s.height, "label_key": key, "version_path": s.paths[key],
                "typicality": per_label[j], "median_typicality": med,
            })
    schema = {"location": pl.Int32, "image_id": pl.String, "source_label_key": pl.String, "x0": pl.Int32, "y0": pl.Int32, "x1": pl.Int32, "y1": pl.Int32,
              "width": pl.Int32, "height": pl.Int32, "label_key": pl.String, "version_path": pl.String, "typicality": pl.Float64, "median_typicality": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def parallel_features(model: Denoiser, locations: pl.DataFrame, labels: list[str], opts: FeatureOptions) -> np.ndarray:
    """(locations, labels x C) features: each version's diffusion features over
    the location under its own label, L2-normalised per label, concatenated
    in label order (then scaled so the whole vector has unit norm)."""
    n = int(locations["location"].max() or 0) if len(locations) else 0
    parts = []
    for key in labels:
        rows = locations.filter(pl.col("label_key") == key).sort("location")
        paths = rows["version_path"].unique(maintain_order=True).to_list()
        x0 = model_space(model, paths)
        fmaps = feature_maps(model, x0, [key] * len(paths), opts)
        where = {p: i for i, p in enumerate(paths)}
        feats = np.zeros((n, fmaps.shape[1]), dtype=np.float32)
        for r in rows.iter_rows(named=True):
            v = region_mean(fmaps[where[r["version_path"]]], (r["x0"], r["y0"], r["x1"], r["y1"]), r["width"], r["height"])
            feats[r["location"] - 1] = (v / v.norm().clamp_min(1e-12)).numpy()
        parts.append(feats)
    return (np.concatenate(parts, axis=1) / np.sqrt(len(labels))).astype(np.float32) if parts else np.zeros((0, 0), dtype=np.float32)


def parallel_clusters(features: np.ndarray, locations: pl.DataFrame, opts: ClusterOptions) -> tuple[pl.DataFrame, pl.DataFrame]:
    """k-means of the concatenated features, clusters ranked by the median of
    their locations' median typicality; members one row per location."""
    first = locations.group_by("location").agg(pl.col("image_id").first(), pl.col("source_label_key").first(), pl.col("x0", "y0", "x1", "y1").first(),
                                               pl.col("median_typicality").first()).sort("location")
    table = first.rename({"median_typicality": "typicality"}).with_columns(pl.col("location").alias("rank_in_label"))
    clusters, members = cluster_patches(features, table, opts)
    members = members.rename({"rank_in_label": "location", "typicality": "median_typicality"}).with_columns(pl.col("location").cast(pl.Int32))
    return clusters, members.join(first.select("location", "source_label_key"), on="location", how="left")


# The tables of parallel mining (what an empty one holds: nothing is translated yet)
PARALLEL_SCHEMA = {"location": pl.Int32, "image_id": pl.String, "source_label_key": pl.String, "x0": pl.Int32, "y0": pl.Int32, "x1": pl.Int32, "y1": pl.Int32,
                   "width": pl.Int32, "height": pl.Int32, "label_key": pl.String, "version_path": pl.String, "typicality": pl.Float64,
                   "median_typicality": pl.Float64, "dataset": pl.String, "checkpoint_id": pl.String, "params": pl.String}
CLUSTER_SCHEMA = {"cluster": pl.Int32, "rank": pl.Int32, "size": pl.Int32, "median_typicality": pl.Float64, "mean_typicality": pl.Float64,
                  "typicality_std": pl.Float64, "spread": pl.Float64, "params": pl.String, "inertia": pl.Float64, "dataset": pl.String, "checkpoint_id": pl.String}
MEMBER_SCHEMA = {"image_id": pl.String, "x0": pl.Int32, "y0": pl.Int32, "x1": pl.Int32, "y1": pl.Int32, "median_typicality": pl.Float64, "location": pl.Int32,
                 "cluster": pl.Int32, "distance": pl.Float64, "rank_in_cluster": pl.Int32, "source_label_key": pl.String, "dataset": pl.String, "checkpoint_id": pl.String}
