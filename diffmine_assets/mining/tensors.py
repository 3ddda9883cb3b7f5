"""Images as model-ready tensors: pixels, and the space a denoiser works in."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from .images import load_rgb


def load_pixels(paths: list[str], resolution: int) -> torch.Tensor:
    """uint8 tensor (N, 3, R, R): each whole image resized to R x R.

    The whole image is resized (not cropped) so that a typicality map covers
    every pixel of the original; non-square images are squeezed, which a
    convolutional model tolerates far better than losing their borders.
    """

    def one(p: str) -> np.ndarray:
        img = load_rgb(p)
        if img.size != (resolution, resolution):
            img = img.resize((resolution, resolution), Image.LANCZOS, reducing_gap=3.0)
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)

    if not paths:
        return torch.zeros((0, 3, resolution, resolution), dtype=torch.uint8)
    with ThreadPoolExecutor(max_workers=4) as pool:
        arrays = list(pool.map(one, paths))
    return torch.from_numpy(np.stack(arrays))


def to_model_range(pixels_u8: torch.Tensor) -> torch.Tensor:
    return pixels_u8.to(torch.float32) / 127.5 - 1.0


def model_space(model, paths: list[str], chunk: int = 256) -> torch.Tensor:
    """The images at `paths` in the space `model` denoises (its `encode` of
    their pixels at its resolution), loaded a chunk at a time: a latent
    backend never holds every image's pixels."""
    parts = [model.encode(to_model_range(load_pixels(paths[i : i + chunk], model.resolution))) for i in range(0, len(paths), chunk)]
    return torch.cat(parts) if parts else model.encode(to_model_range(load_pixels([], model.resolution)))
