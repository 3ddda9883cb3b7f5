"""The pictures of one label: cluster grid, patch strips, heatmaps (PNG bytes)."""

from __future__ import annotations

import numpy as np
import polars as pl

from .pictures import ImageCache, contact_sheet, heatmap_pair, patch_strip_rows, png_bytes

STRIP = 12
HEATMAPS = 8
GRID_MEMBERS = 10
GRID_ROWS = 32


def cluster_grid(clusters: pl.DataFrame, members: pl.DataFrame, paths: dict[str, str], cache: ImageCache | None = None):
    """One row per cluster, best first; members nearest-to-centre first."""
    groups = []
    for c in clusters.sort("rank").head(GRID_ROWS).iter_rows(named=True):
        m = members.filter(pl.col("cluster") == c["cluster"]).sort("rank_in_cluster").head(GRID_MEMBERS)
        items = [(paths[r["image_id"]], (r["x0"], r["y0"], r["x1"], r["y1"])) for r in m.iter_rows(named=True)]
        groups.append((f"#{c['rank']}  n={c['size']}\nmedian {c['median_typicality']:.4f}", items))
    return contact_sheet(patch_strip_rows(groups, cache), thumb=48, caption_width=130)


def patch_strips(patches: pl.DataFrame, cache: ImageCache | None = None):
    """Most typical, random and least typical patches of a label, a row each."""
    groups = []
    for selection, caption in (("top", "most typical"), ("random", "random"), ("bottom", "least typical")):
        rows = patches.filter(pl.col("selection") == selection).sort("rank_in_label").head(STRIP)
        groups.append((caption, [(r["path"], (r["x0"], r["y0"], r["x1"], r["y1"])) for r in rows.iter_rows(named=True)]))
    return contact_sheet(patch_strip_rows(groups, cache), thumb=48, caption_width=110)


def heatmaps(typicality: pl.DataFrame, mean_maps: np.ndarray, cache: ImageCache | None = None):
    """The most and least typical images of a label beside their maps."""
    cache = cache or ImageCache()
    ordered = typicality.sort("typicality", descending=True)
    picks = ordered.head(HEATMAPS // 2).vstack(ordered.tail(HEATMAPS // 2)) if len(ordered) > HEATMAPS else ordered
    rows = []
    for r in picks.iter_rows(named=True):
        img = cache.get(r["path"])
        rows.append((f"T={r['typicality']:+.4f}", [heatmap_pair(img, mean_maps[r["map_index"]])]))
    return contact_sheet(rows, thumb=160, caption_width=100)


def as_png(img) -> bytes:
    return png_bytes(img)
