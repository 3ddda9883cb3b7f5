"""The built-in dataset: synthetic scenes with planted, known visual elements.

Two presets: `planted` (below) and `photo-shapes` (photo_shapes.py: real
photographs with one small object whose shape is the label).

Four labels, each with two elements of its own (a shape, a colour, a texture),
two distractor elements that every label has at the same rate, a label-wide
tint of the background (the consistent change translation should find), and
varied backgrounds. Every element's box is recorded, so the typicality of
each label can be scored against the truth. Everything follows from the seed:
the same options give byte-identical PNG files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..config.datasets import BuiltinOptions
from . import photo_shapes
from .base import Candidate, Discovery


@dataclass(frozen=True)
class ElementKind:
    name: str
    shape: str  # disk, square, triangle, cross, ring, diamond, star, bar
    colour: tuple[int, int, int]
    texture: str = "flat"  # flat, stripes, checker


# label -> (tint of the background, its two elements). The tint is mixed into
# the background only, so elements keep their colour under every label.
LABELS: dict[str, tuple[tuple[int, int, int], tuple[ElementKind, ElementKind]]] = {
    "amber": (
        (255, 170, 60),
        (ElementKind("red_disk", "disk", (220, 30, 30)), ElementKind("striped_square", "square", (20, 20, 20), "stripes")),
    ),
    "cobalt": (
        (60, 110, 255),
        (ElementKind("blue_triangle", "triangle", (30, 60, 230)), ElementKind("checker_square", "square", (240, 220, 20), "checker")),
    ),
    "jade": (
        (60, 200, 110),
        (ElementKind("green_cross", "cross", (20, 170, 60)), ElementKind("magenta_ring", "ring", (210, 30, 200))),
    ),
    "violet": (
        (170, 90, 230),
        (ElementKind("cyan_diamond", "diamond", (20, 200, 220)), ElementKind("white_star", "star", (250, 250, 250))),
    ),
}
DISTRACTORS = (
    ElementKind("gray_square", "square", (128, 128, 128)),
    ElementKind("black_bar", "bar", (15, 15, 15)),
)
TINT_STRENGTH = 0.35


@dataclass(frozen=True)
class PlacedElement:
    kind: ElementKind
    role: str  # "label" or "distractor"
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), image pixels


@dataclass(frozen=True)
class SceneSpec:
    label: str
    index: int
    relpath: str
    elements: tuple[PlacedElement, ...]
    background: tuple  # colour_a, colour_b, angle, noise seed


def _exact_share(n: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask with exactly round(share * n) True entries."""
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: int(round(share * n))]] = True
    return mask


def _place(rng: np.random.Generator, size: int, side: int, taken: list[tuple[int, int, int, int]], bar: bool):
    w, h = (side, max(3, side // 4)) if bar else (side, side)
    if bar and rng.random() < 0.5:
        w, h = h, w
    for _ in range(200):
        x0 = int(rng.integers(0, size - w + 1))
        y0 = int(rng.integers(0, size - h + 1))
        box = (x0, y0, x0 + w, y0 + h)
        gap = 2
        if all(box[2] + gap <= t[0] or t[2] + gap <= box[0] or box[3] + gap <= t[1] or t[3] + gap <= box[1] for t in taken):
            return box
    return None


def labels(options: BuiltinOptions) -> list[str]:
    """The labels of the preset, in order."""
    return list(photo_shapes.SHAPES) if options.preset == "photo-shapes" else list(LABELS)


def layout(options: BuiltinOptions) -> list:
    """Where every element of every image goes; cheap, no pixels drawn."""
    if options.preset == "photo-shapes":
        return photo_shapes.layout(options)
    size = options.image_size
    n = options.images_per_label
    lo, hi = max(6, round(size * 0.19)), max(8, round(size * 0.31))
    scenes: list[SceneSpec] = []
    for li, (label, (_tint, own)) in enumerate(LABELS.items()):
        share_rng = np.random.default_rng([options.seed, li, 0])
        present = {k.name: _exact_share(n, options.element_share, share_rng) for k in own}
        present.update({k.name: _exact_share(n, options.distractor_share, share_rng) for k in DISTRACTORS})
        for i in range(n):
            rng = np.random.default_rng([options.seed, li, i + 1])
            wanted = [(k, "label") for k in own if present[k.name][i]]
            wanted += [(k, "distractor") for k in DISTRACTORS if present[k.name][i]]
            order = rng.permutation(len(wanted))
            taken: list[tuple[int, int, int, int]] = []
            placed: list[PlacedElement] = []
            for j in order:
                kind, role = wanted[j]
                side = int(rng.integers(lo, hi + 1))
                box = _place(rng, size, side, taken, kind.shape == "bar")
                if box is not None:
                    taken.append(box)
                    placed.append(PlacedElement(kind, role, box))
            colours = rng.integers(40, 216, size=(2, 3))
            background = (tuple(int(c) for c in colours[0]), tuple(int(c) for c in colours[1]), float(rng.uniform(0, 2 * np.pi)), int(rng.integers(0, 2**31)))
            scenes.append(SceneSpec(label, i, f"{label}/{label}_{i:05d}.png", tuple(placed), background))
    return scenes


def _background(size: int, tint: tuple[int, int, int], spec: tuple) -> np.ndarray:
    colour_a, colour_b, angle, noise_seed = spec
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / max(size - 1, 1)
    t = (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)) + 0.5
    t = np.clip(t, 0, 1)[..., None]
    img = (1 - t) * np.array(colour_a) + t * np.array(colour_b)
    # Low-frequency blotches, so backgrounds are not plain gradients.
    noise_rng = np.random.default_rng(noise_seed)
    coarse = noise_rng.normal(0, 18, size=(5, 5, 3))
    blotch = np.asarray(
        Image.fromarray(coarse.astype(np.float32)[..., 0]).resize((size, size), Image.BICUBIC)
    )[..., None]
    img = img + blotch
    img = (1 - TINT_STRENGTH) * img + TINT_STRENGTH * np.array(tint)
    return np.clip(img, 0, 255)


def _draw(img: Image.Image, el: PlacedElement) -> None:
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = el.box
    w = x1 - x0
    c = el.kind.colour
    cx, cy = (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2
    shape = el.kind.shape
    if shape == "disk":
        d.ellipse((x0, y0, x1 - 1, y1 - 1), fill=c)
    elif shape == "ring":
        d.ellipse((x0, y0, x1 - 1, y1 - 1), outline=c, width=max(2, w // 5))
    elif shape in ("square", "bar"):
        if el.kind.texture == "stripes":
            period = max(4, w // 3)
            for y in range(y0, y1):
                colour = c if ((y - y0) // (period // 2)) % 2 == 0 else (245, 245, 245)
                d.line((x0, y, x1 - 1, y), fill=colour)
        elif el.kind.texture == "checker":
            cell = max(3, w // 4)
            for yy in range(y0, y1, cell):
                for xx in range(x0, x1, cell):
                    dark = ((xx - x0) // cell + (yy - y0) // cell) % 2
                    d.rectangle((xx, yy, min(xx + cell, x1) - 1, min(yy + cell, y1) - 1), fill=(20, 20, 20) if dark else c)
        else:
            d.rectangle((x0, y0, x1 - 1, y1 - 1), fill=c)
    elif shape == "triangle":
        d.polygon([(cx, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)], fill=c)
    elif shape == "diamond":
        d.polygon([(cx, y0), (x1 - 1, cy), (cx, y1 - 1), (x0, cy)], fill=c)
    elif shape == "cross":
        t = max(2, w // 3)
        d.rectangle((x0, cy - t / 2, x1 - 1, cy + t / 2), fill=c)
        d.rectangle((cx - t / 2, y0, cx + t / 2, y1 - 1), fill=c)
    elif shape == "star":
        r_out, r_in = w / 2, w / 4.5
        pts = []
        for k in range(10):
            r = r_out if k % 2 == 0 else r_in
            a = -np.pi / 2 + k * np.pi / 5
            pts.append((cx + r * np.cos(a), cy + r * np.sin(a)))
        d.polygon(pts, fill=c)
    else:  # pragma: no cover - the catalogue above is closed
        raise ValueError(f"unknown shape {shape}")


def render(scene, options: BuiltinOptions) -> Image.Image:
    if isinstance(scene, photo_shapes.PhotoScene):
        return photo_shapes.render(scene, options)
    tint = LABELS[scene.label][0]
    arr = _background(options.image_size, tint, scene.background)
    img = Image.fromarray(arr.astype(np.uint8), "RGB")
    for el in scene.elements:
        _draw(img, el)
    return img


def generate(out_dir: Path, options: BuiltinOptions) -> list[SceneSpec]:
    """Write every image under `out_dir/<label>/` (atomically, skipping files
    that already hold the same bytes) and return the layout."""
    scenes = layout(options)
    for scene in scenes:
        target = out_dir / scene.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        img = render(scene, options)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        img.save(tmp, format="PNG", optimize=False)
        if target.exists() and target.read_bytes() == tmp.read_bytes():
            tmp.unlink()
        else:
            os.replace(tmp, target)
    return scenes


def boxes(scenes: list) -> list[dict]:
    """One record per planted element, keyed by the image's relative path."""
    if scenes and isinstance(scenes[0], photo_shapes.PhotoScene):
        return photo_shapes.boxes(scenes)
    rows = []
    for s in scenes:
        for el in s.elements:
            rows.append(
                {
                    "relpath": s.relpath,
                    "kind": el.kind.name,
                    "role": el.role,
                    "element_label": s.label if el.role == "label" else None,
                    "x0": el.box[0],
                    "y0": el.box[1],
                    "x1": el.box[2],
                    "y1": el.box[3],
                }
            )
    return rows


def discover(spec, files_dir: Path) -> Discovery:
    """The built-in kind's candidates: its images, generated (once) under
    the dataset's files."""
    root = files_dir / "source"
    scenes = generate(root, spec.options)
    return Discovery(candidates=[Candidate(root / s.relpath, s.relpath, s.label) for s in scenes])
