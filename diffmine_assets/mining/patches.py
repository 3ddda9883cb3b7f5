"""From typicality maps to patches (METHOD.md section 3).

A window's typicality is the mean of the map over it (k x k pixels, stride s,
in pixels of the original image), computed for every window at once with an
integral image. Per image the best windows that do not overlap each other are
kept (greedy), per label the top K of those. The same number of random
windows and the least typical windows are kept beside them for comparison.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

from .config.options import PatchOptions

# Maps come from a 32 to 64 px model space, so upsampling beyond this many
# pixels per side adds nothing but memory; windows are scaled to match.
MAX_WORK_SIDE = 512


@dataclass(frozen=True)
class Window:
    y0: int
    x0: int
    score: float
    stderr: float


def upsample(maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear upsampling of (..., h, w) maps to (..., height, width)."""
    lead = maps.shape[:-2]
    out = F.interpolate(maps.reshape(-1, 1, *maps.shape[-2:]).float(), size=(height, width), mode="bilinear", align_corners=False)
    return out.reshape(*lead, height, width)


def window_means(maps: torch.Tensor, k: int, stride: int) -> torch.Tensor:
    """Mean over every k x k window, stride `stride`: (..., H, W) ->
    (..., ny, nx), ny = (H - k) // stride + 1."""
    m = maps.to(torch.float64)
    ii = F.pad(m.cumsum(-1).cumsum(-2), (1, 0, 1, 0))
    H, W = m.shape[-2:]
    ys = torch.arange(0, H - k + 1, stride)
    xs = torch.arange(0, W - k + 1, stride)
    y1, x1 = ys + k, xs + k
    total = ii[..., y1[:, None], x1[None, :]] - ii[..., ys[:, None], x1[None, :]] - ii[..., y1[:, None], xs[None, :]] + ii[..., ys[:, None], xs[None, :]]
    return total / (k * k)


def greedy_non_overlapping(scores: np.ndarray, k: int, stride: int, n: int, highest: bool = True) -> list[tuple[int, int]]:
    """Up to n window positions (y0, x0 in pixels), best first, no two of
    which overlap."""
    flat = scores.ravel()
    order = np.argsort(-flat if highest else flat, kind="stable")
    nx = scores.shape[1]
    chosen: list[tuple[int, int]] = []
    for idx in order:
        y, x = (int(idx) // nx) * stride, (int(idx) % nx) * stride
        if all(abs(y - cy) >= k or abs(x - cx) >= k for cy, cx in chosen):
            chosen.append((y, x))
            if len(chosen) == n:
                break
    return chosen


@dataclass
class ImageWindows:
    top: list[Window]
    bottom: list[Window]
    random: list[Window]
    scale: float  # original pixels per working pixel


def image_windows(replicate_maps: torch.Tensor, height: int, width: int, window_px: int, stride_px: int, per_image: int, rng: np.random.Generator) -> ImageWindows | None:
    """Windows of one image from its replicate maps (G, h, w); None when the
    image is smaller than the window."""
    if min(height, width) < window_px:
        return None
    scale = max(1.0, max(height, width) / MAX_WORK_SIDE)
    wh, ww = max(1, round(height / scale)), max(1, round(width / scale))
    k = max(1, round(window_px / scale))
    s = max(1, round(stride_px / scale))
    k = min(k, wh, ww)
    reps = window_means(upsample(replicate_maps, wh, ww), k, s)  # (G, ny, nx)
    G = reps.shape[0]
    mean = reps.mean(0)
    se = reps.std(0) / G**0.5
    score = mean.numpy()

    def build(positions):
        out = []
        for y, x in positions:
            iy, ix = y // s, x // s
            out.append(Window(int(round(y * scale)), int(round(x * scale)), float(mean[iy, ix]), float(se[iy, ix])))
        return out

    top = build(greedy_non_overlapping(score, k, s, per_image, highest=True))
    bottom = build(greedy_non_overlapping(score, k, s, per_image, highest=False))
    ry = rng.integers(0, score.shape[0], size=per_image)
    rx = rng.integers(0, score.shape[1], size=per_image)
    rand = build([(int(a) * s, int(b) * s) for a, b in zip(ry, rx)])
    return ImageWindows(top, bottom, rand, scale)


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
