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
from PIL import Image

from .clustering import cluster_patches
from .datasets.spec import ClusterOptions, FeatureOptions, PatchOptions
from .denoisers.base import Denoiser
from .features import feature_maps, region_mean
from .patches import MAX_WORK_SIDE, greedy_non_overlapping, upsample, window_means
from .pictures import contact_sheet
from .tensors import load_pixels, to_model_range


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
        x0 = model.encode(to_model_range(load_pixels(paths, model.resolution)))
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


def _crop(path: str, box: tuple[int, int, int, int], width: int, height: int, cache: dict) -> Image.Image:
    if path not in cache:
        img = Image.open(path)
        img.load()
        cache[path] = img.convert("RGB")
    img = cache[path]
    sx, sy = img.width / width, img.height / height
    x0, y0, x1, y1 = box
    return img.crop((int(round(x0 * sx)), int(round(y0 * sy)), max(int(round(x0 * sx)) + 1, int(round(x1 * sx))), max(int(round(y0 * sy)) + 1, int(round(y1 * sy)))))


def parallel_grid(clusters: pl.DataFrame, members: pl.DataFrame, locations: pl.DataFrame, labels: list[str], label_names: dict[str, str],
                  per_cluster: int = 2, max_clusters: int = 16) -> Image.Image:
    """One row per (cluster, member), best cluster first; one column per label:
    the same location in each label's version."""
    cache: dict = {}
    rows = [("label", [_caption_tile(label_names.get(k, k)) for k in labels])]
    for c in clusters.sort("rank").head(max_clusters).iter_rows(named=True):
        picks = members.filter(pl.col("cluster") == c["cluster"]).sort("rank_in_cluster").head(per_cluster)
        for m in picks.iter_rows(named=True):
            loc = locations.filter(pl.col("location") == m["location"])
            by_label = {r["label_key"]: r for r in loc.iter_rows(named=True)}
            crops = [_crop(by_label[k]["version_path"], (m["x0"], m["y0"], m["x1"], m["y1"]), by_label[k]["width"], by_label[k]["height"], cache) for k in labels]
            rows.append((f"#{c['rank']} n={c['size']}\nmedian {c['median_typicality']:.4f}", crops))
    return contact_sheet(rows, thumb=48, caption_width=130)


def _caption_tile(text: str) -> Image.Image:
    from PIL import ImageDraw

    tile = Image.new("RGB", (48, 48), (255, 255, 255))
    ImageDraw.Draw(tile).text((2, 18), text[:8], fill=(0, 0, 0))
    return tile


def translation_grid(sources: list[tuple[str, str]], outputs: dict[tuple[str, str], str], labels: list[str], label_names: dict[str, str], source_key: str) -> Image.Image:
    """Rows: the source images; columns: every label (the source label's
    column holds the image itself)."""
    rows = [("label", [_caption_tile(label_names.get(k, k)) for k in labels])]
    for image_id, path in sources:
        ims = []
        for k in labels:
            p = path if k == source_key else outputs[(image_id, k)]
            img = Image.open(p)
            img.load()
            ims.append(img.convert("RGB"))
        rows.append((image_id[:12], ims))
    return contact_sheet(rows, thumb=64, caption_width=110)
