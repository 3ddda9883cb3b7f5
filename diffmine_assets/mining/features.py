"""Diffusion features of patches (METHOD.md section 4, "DIFT").

The whole image is noised once at a small timestep (the same noise for every
image, from the seed), passed through the network with its label's condition,
and the activations of one up-sampling block are averaged over each patch's
region and L2-normalised.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from .config.options import FeatureOptions
from .denoisers.base import Denoiser
from .tensors import model_space


def feature_maps(model: Denoiser, x0: torch.Tensor, label_keys: list[str], opts: FeatureOptions) -> torch.Tensor:
    """(B, C, h, w) feature maps of images `x0` (model space)."""
    g = torch.Generator().manual_seed(opts.seed)
    eps = torch.randn(x0.shape[1:], generator=g)
    out = []
    model.for_inference()
    with torch.inference_mode():
        for s in range(0, x0.shape[0], opts.batch_size):
            xb = x0[s : s + opts.batch_size]
            b = xb.shape[0]
            t = torch.full((b,), opts.timestep, dtype=torch.long)
            xt = model.add_noise(xb, eps.expand(b, -1, -1, -1), t)
            out.append(model.features(xt, t, model.condition_ids(label_keys[s : s + b]), opts.block))
    return torch.cat(out)


def region_mean(fmap: torch.Tensor, box: tuple[int, int, int, int], width: int, height: int) -> torch.Tensor:
    """Mean of a (C, h, w) map over the cells a box (original pixels) covers."""
    C, h, w = fmap.shape
    x0, y0, x1, y1 = box
    fx0 = min(w - 1, int(np.floor(x0 * w / width)))
    fy0 = min(h - 1, int(np.floor(y0 * h / height)))
    fx1 = max(fx0 + 1, int(np.ceil(x1 * w / width)))
    fy1 = max(fy0 + 1, int(np.ceil(y1 * h / height)))
    return fmap[:, fy0:fy1, fx0:fx1].mean(dim=(1, 2))


def patch_features(model: Denoiser, patches: pl.DataFrame, images: pl.DataFrame, opts: FeatureOptions) -> np.ndarray:
    """(P, C) L2-normalised features of `patches` (rows with image_id and a
    box), computing each image's feature map once."""
    ids = patches["image_id"].unique(maintain_order=True).to_list()
    info = images.filter(pl.col("image_id").is_in(ids)).select("image_id", "path", "width", "height", "label_key")
    info = {r["image_id"]: r for r in info.iter_rows(named=True)}
    missing = [i for i in ids if i not in info]
    if missing:
        raise ValueError(f"patches refer to images not in the images table: {missing[:5]}")
    rows = [info[i] for i in ids]
    dim = None
    out = None
    for s in range(0, len(rows), opts.batch_size):
        chunk = rows[s : s + opts.batch_size]
        x0 = model_space(model, [r["path"] for r in chunk])
        fmaps = feature_maps(model, x0, [r["label_key"] for r in chunk], opts)
        if out is None:
            dim = fmaps.shape[1]
            out = np.zeros((len(patches), dim), dtype=np.float32)
        for j, r in enumerate(chunk):
            sel = np.flatnonzero((patches["image_id"] == r["image_id"]).to_numpy())
            for p in sel:
                pr = patches.row(int(p), named=True)
                v = region_mean(fmaps[j], (pr["x0"], pr["y0"], pr["x1"], pr["y1"]), r["width"], r["height"])
                out[p] = (v / v.norm().clamp_min(1e-12)).numpy()
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)
