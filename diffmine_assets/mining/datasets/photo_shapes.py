"""The `photo-shapes` preset of the built-in dataset: realistic scenes whose
labels differ only by the shape of one small object.

Ten labels, one shape each. Every image is a random crop of a real photograph
(the sample images that scikit-image ships in its wheel, read from disk: no
download) with one object pasted on it: the label's shape, about a third of
the image side, at a random position, scale and small rotation, in a colour
drawn from one distribution shared by all labels. Nothing else differs
between labels (no tint, no label-wide style), so a model can only tell them
apart by looking at the object, the way a real collection's labels often
differ by one small thing. Every object's box is recorded. Everything follows
from the seed: the same options give byte-identical PNG files.
"""

from __future__ import annotations

import colorsys
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Photographs shipped inside the scikit-image wheel (skimage/data/). Colour
# scenes and a few gray textures; none of them is fetched from the network.
PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png",
    "rocket.jpg", "retina.jpg", "ihc.png", "hubble_deep_field.jpg",
    "camera.png", "brick.png", "grass.png", "gravel.png",
)

# Shapes in a unit square [-1, 1]^2, drawn at SUPERSAMPLE x and reduced, so
# edges are anti-aliased like a photographed object's.
SHAPES = ("disk", "ring", "square", "triangle", "cross", "diamond", "star", "crescent", "hourglass", "ell")
SUPERSAMPLE = 4
SIDE_RANGE = (0.28, 0.40)  # object side / image side: "about a third"
MAX_ROTATION_DEG = 20.0
CROP_RANGE = (0.25, 0.75)  # crop side / photo's shorter side


class PhotoSourceError(RuntimeError):
    pass


@dataclass(frozen=True)
class PhotoScene:
    label: str
    index: int
    relpath: str
    photo: int
    crop: tuple[int, int, int]  # x0, y0, side in the photo's pixels
    flip: bool
    colour: tuple[int, int, int]
    side: int
    angle: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the object's pixels (exclusive)
    origin: tuple[int, int]  # where the object's square canvas is pasted


def photo_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise PhotoSourceError("the photo-shapes preset needs scikit-image's sample images: pip install scikit-image")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@lru_cache(maxsize=1)
def photos() -> tuple[np.ndarray, ...]:
    """The background photographs as RGB arrays, read once per process."""
    folder = photo_dir()
    out = []
    for name in PHOTOS:
        path = folder / name
        if not path.is_file():
            raise PhotoSourceError(f"sample photograph {path} is missing from the scikit-image install")
        with Image.open(path) as img:
            out.append(np.asarray(img.convert("RGB")))
    return tuple(out)


def _polygon(points, cx, cy, r, angle):
    c, s = np.cos(angle), np.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in points]


def _star(n=5, inner=0.45):
    return [((1 if k % 2 == 0 else inner) * np.cos(-np.pi / 2 + k * np.pi / n), (1 if k % 2 == 0 else inner) * np.sin(-np.pi / 2 + k * np.pi / n)) for k in range(2 * n)]


POLYGONS = {
    "square": [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)],
    "triangle": [(0.0, -1.0), (0.95, 0.8), (-0.95, 0.8)],
    "cross": [(-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3), (0.3, 0.3), (0.3, 1), (-0.3, 1), (-0.3, 0.3), (-1, 0.3), (-1, -0.3), (-0.3, -0.3)],
    "diamond": [(0.0, -1.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)],
    "star": _star(),
    "hourglass": [(-0.9, -0.95), (0.9, -0.95), (0.12, 0.0), (0.9, 0.95), (-0.9, 0.95), (-0.12, 0.0)],
    "ell": [(-0.85, -0.95), (-0.2, -0.95), (-0.2, 0.3), (0.85, 0.3), (0.85, 0.95), (-0.85, 0.95)],
}


def shape_mask(shape: str, side: int, angle_deg: float) -> np.ndarray:
    """Coverage in [0, 1] of a (side, side) canvas by the shape, rotated."""
    big = side * SUPERSAMPLE
    img = Image.new("L", (big, big), 0)
    d = ImageDraw.Draw(img)
    c = (big - 1) / 2
    r = big / 2 * 0.98
    a = np.deg2rad(angle_deg)
    if shape == "disk":
        d.ellipse((c - r, c - r, c + r, c + r), fill=255)
    elif shape == "ring":
        d.ellipse((c - r, c - r, c + r, c + r), fill=255)
        d.ellipse((c - 0.55 * r, c - 0.55 * r, c + 0.55 * r, c + 0.55 * r), fill=0)
    elif shape == "crescent":
        d.ellipse((c - r, c - r, c + r, c + r), fill=255)
        ox, oy = 0.45 * r * np.cos(a - 0.4), 0.45 * r * np.sin(a - 0.4)
        d.ellipse((c + ox - 0.85 * r, c + oy - 0.85 * r, c + ox + 0.85 * r, c + oy + 0.85 * r), fill=0)
    elif shape in POLYGONS:
        d.polygon(_polygon(POLYGONS[shape], c, c, r, a), fill=255)
    else:  # pragma: no cover - SHAPES is closed
        raise ValueError(f"unknown shape {shape}")
    small = img.resize((side, side), Image.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    # one distribution for every label: any hue, fairly saturated and bright
    h, s, v = rng.uniform(0, 1), rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0)
    return tuple(int(round(255 * x)) for x in colorsys.hsv_to_rgb(h, s, v))


def layout(options) -> list[PhotoScene]:
    """Every image's background crop and object; cheap, no pixels drawn (but
    the object's mask, for its exact box)."""
    size = options.image_size
    n = options.images_per_label
    shapes_of_photos = [p.shape[:2] for p in photos()]
    scenes = []
    for li, label in enumerate(SHAPES):
        for i in range(n):
            rng = np.random.default_rng([options.seed, 7919, li, i])
            p = int(rng.integers(len(shapes_of_photos)))
            ph, pw = shapes_of_photos[p]
            crop_side = int(rng.uniform(*CROP_RANGE) * min(ph, pw))
            cx0 = int(rng.integers(0, pw - crop_side + 1))
            cy0 = int(rng.integers(0, ph - crop_side + 1))
            flip = bool(rng.random() < 0.5)
            side = int(rng.integers(round(SIDE_RANGE[0] * size), round(SIDE_RANGE[1] * size) + 1))
            angle = float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
            colour = _colour(rng)
            ox = int(rng.integers(0, size - side + 1))
            oy = int(rng.integers(0, size - side + 1))
            mask = shape_mask(label, side, angle)
            ys, xs = np.nonzero(mask >= 0.5)
            box = (ox + int(xs.min()), oy + int(ys.min()), ox + int(xs.max()) + 1, oy + int(ys.max()) + 1)
            scenes.append(PhotoScene(label, i, f"{label}/{label}_{i:05d}.png", p, (cx0, cy0, crop_side), flip, colour, side, angle, box, (ox, oy)))
    return scenes


def render(scene: PhotoScene, options) -> Image.Image:
    size = options.image_size
    x0, y0, side = scene.crop
    bg = Image.fromarray(photos()[scene.photo][y0 : y0 + side, x0 : x0 + side])
    if scene.flip:
        bg = bg.transpose(Image.FLIP_LEFT_RIGHT)
    arr = np.asarray(bg.resize((size, size), Image.LANCZOS, reducing_gap=3.0), dtype=np.float32)
    mask = shape_mask(scene.label, scene.side, scene.angle)[..., None]
    ox, oy = scene.origin
    region = arr[oy : oy + scene.side, ox : ox + scene.side]
    arr[oy : oy + scene.side, ox : ox + scene.side] = (1 - mask) * region + mask * np.array(scene.colour, dtype=np.float32)
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")


def boxes(scenes: list[PhotoScene]) -> list[dict]:
    return [
        {"relpath": s.relpath, "kind": s.label, "role": "label", "element_label": s.label, "x0": s.box[0], "y0": s.box[1], "x1": s.box[2], "y1": s.box[3]}
        for s in scenes
    ]
