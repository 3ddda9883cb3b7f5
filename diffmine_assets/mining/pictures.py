"""Pictures people look at: contact sheets of images and crops, with captions."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .datasets.images import load_rgb

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
