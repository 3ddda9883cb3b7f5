"""Pictures people look at: contact sheets of images and crops, with captions."""

from __future__ import annotations

import io

import numpy as np
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..images import load_rgb

_FONT = ImageFont.load_default()


def contact_sheet(rows: list[tuple[str, list[Image.Image]]], thumb: int = 64, caption_width: int = 120, pad: int = 2) -> Image.Image:
    """One row per (caption, images), thumbnails scaled to `thumb` pixels."""
    cols = max((len(ims) for _, ims in rows), default=1) or 1
    width = caption_width + cols * (thumb + pad) + pad
    height = max(1, len(rows)) * (thumb + pad) + pad
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (caption, ims) in enumerate(rows):
        y = pad + r * (thumb + pad)
        for line_no, line in enumerate(caption.split("\n")[:4]):
            draw.text((4, y + 4 + 12 * line_no), line[:20], fill=(0, 0, 0), font=_FONT)
        for c, im in enumerate(ims):
            scale = thumb / max(im.size)
            size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
            resample = Image.NEAREST if scale >= 2 else Image.LANCZOS
            sheet.paste(im.resize(size, resample), (caption_width + pad + c * (thumb + pad), y))
    return sheet


def image_rows(groups: list[tuple[str, list[str | Path]]]) -> list[tuple[str, list[Image.Image]]]:
    return [(caption, [load_rgb(p) for p in paths]) for caption, paths in groups]


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def line_chart(series: dict[str, list[tuple[float, float]]], title: str, size=(480, 260)) -> Image.Image:
    """A small line chart (x, y points per named series), for loss curves."""
    W, H = size
    left, right, top, bottom = 48, 10, 22, 28
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    pts = [p for s in series.values() for p in s if p[1] == p[1]]
    d.text((left, 4), title, fill=(0, 0, 0), font=_FONT)
    if not pts:
        return img
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    sx = lambda x: left + (x - x0) / (x1 - x0) * (W - left - right)  # noqa: E731
    sy = lambda y: H - bottom - (y - y0) / (y1 - y0) * (H - top - bottom)  # noqa: E731
    d.rectangle((left, top, W - right, H - bottom), outline=(180, 180, 180))
    d.text((2, top), f"{y1:.3g}", fill=(0, 0, 0), font=_FONT)
    d.text((2, H - bottom - 10), f"{y0:.3g}", fill=(0, 0, 0), font=_FONT)
    d.text((left, H - bottom + 4), f"{x0:g}", fill=(0, 0, 0), font=_FONT)
    d.text((W - right - 40, H - bottom + 4), f"{x1:g}", fill=(0, 0, 0), font=_FONT)
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44)]
    for i, (name, s) in enumerate(series.items()):
        s = [p for p in s if p[1] == p[1]]
        if len(s) > 1:
            d.line([(sx(x), sy(y)) for x, y in s], fill=colours[i % 3], width=2)
        d.text((W - right - 110, top + 4 + 12 * i), name, fill=colours[i % 3], font=_FONT)
    return img


class ImageCache:
    """Decoded images by path, so a grid opens each file once."""

    def __init__(self):
        self._cache: dict[str, Image.Image] = {}

    def get(self, path: str) -> Image.Image:
        if path not in self._cache:
            self._cache[path] = load_rgb(path)
        return self._cache[path]

    def crop(self, path: str, box: tuple[int, int, int, int]) -> Image.Image:
        return self.get(path).crop(box)


def patch_strip_rows(groups: list[tuple[str, list[tuple[str, tuple[int, int, int, int]]]]], cache: ImageCache | None = None) -> list[tuple[str, list[Image.Image]]]:
    """(caption, [(path, box), ...]) groups to rows of crops."""
    cache = cache or ImageCache()
    return [(caption, [cache.crop(p, b) for p, b in items]) for caption, items in groups]


def heat_colour(values: np.ndarray) -> np.ndarray:
    """Diverging map: blue below zero, red above, scaled by the largest magnitude."""
    scale = float(np.abs(values).max()) or 1.0
    v = np.clip(values / scale, -1, 1)
    rgb = np.zeros((*v.shape, 3))
    rgb[..., 0] = np.where(v > 0, 1.0, 1.0 + v)
    rgb[..., 1] = 1.0 - np.abs(v)
    rgb[..., 2] = np.where(v < 0, 1.0, 1.0 - v)
    return (rgb * 255).astype(np.uint8)


def heatmap_pair(img: Image.Image, tmap: np.ndarray) -> Image.Image:
    """The image beside its typicality map (upsampled to the image) blended over it."""
    up = np.asarray(Image.fromarray(tmap.astype(np.float32)).resize(img.size, Image.BILINEAR))
    overlay = Image.blend(img.convert("RGB"), Image.fromarray(heat_colour(up)), 0.6)
    pair = Image.new("RGB", (img.width * 2 + 2, img.height), (255, 255, 255))
    pair.paste(img, (0, 0))
    pair.paste(overlay, (img.width + 2, 0))
    return pair
