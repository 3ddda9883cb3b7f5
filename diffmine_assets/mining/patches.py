"""From typicality maps to patches (METHOD.md section 3).

A window's typicality is the mean of the map over it (k x k pixels, stride s,
in pixels of the original image), computed for every window at once with an
integral image. Per image the best windows that do not overlap each other are
kept (greedy), per label the top K of those. The same number of random
windows and the least typical windows are kept beside them for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

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
