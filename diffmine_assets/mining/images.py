"""Reading images safely: one place decides what is a usable image.

Every image reaches the model through :func:`load_rgb`, so EXIF rotation,
alpha, palettes, grayscale and 16-bit data are handled the same way at
ingestion (where the recorded width and height come from) and at training.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Files that are never images and never worth a warning.
IGNORED_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}


class ImageProblem(Exception):
    """An image that cannot be used; the message is the reason shown to users."""


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    mode: str
    format: str
    sha256: str
    bytes: int


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _open_checked(path: Path, max_pixels: int) -> Image.Image:
    try:
        img = Image.open(path)
    except UnidentifiedImageError:
        raise ImageProblem("not an image: unrecognised format") from None
    except Image.DecompressionBombError as exc:
        raise ImageProblem(f"too large: {exc}") from None
    except OSError as exc:
        raise ImageProblem(f"unreadable: {exc}") from None
    w, h = img.size
    # Checked on the header, before any pixel is decoded: a bomb never expands.
    if w * h > max_pixels:
        img.close()
        raise ImageProblem(f"too large: {w}x{h} = {w * h} pixels > max_pixels {max_pixels}")
    return img


def _decode(img: Image.Image) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
            return ImageOps.exif_transpose(img)
    except Image.DecompressionBombWarning as exc:
        raise ImageProblem(f"too large: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageProblem(f"corrupt or truncated: {exc}") from None


def inspect_image(path: Path, *, max_pixels: int, min_side: int) -> ImageInfo:
    """Fully decode `path` once and describe it, or raise ImageProblem."""
    img = _open_checked(path, max_pixels)
    fmt = img.format or "?"
    with img:
        decoded = _decode(img)
        w, h = decoded.size
        mode = img.mode
    if min(w, h) < min_side:
        raise ImageProblem(f"too small: {w}x{h}, shorter side < min_side {min_side}")
    return ImageInfo(width=w, height=h, mode=mode, format=fmt, sha256=sha256_file(path), bytes=path.stat().st_size)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB; transparency is composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr8 = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr8 = ((arr - lo) / (hi - lo or 1.0) * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_rgb(path: str | Path, *, max_pixels: int = 50_000_000) -> Image.Image:
    """The upright 8-bit RGB pixels of an image file."""
    path = Path(path)
    img = _open_checked(path, max_pixels)
    with img:
        return to_rgb(_decode(img))
