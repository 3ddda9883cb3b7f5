"""Typicality as localisation (METHOD.md section 6, the paper's X-ray
protocol): per label, the mean over its images with boxes of the average
precision of the typicality map against the label's boxes; the dataset's
figure is the mean over labels (each finding counts once, however many
images it has). Scored for the trained model, its control, and along
training from the snapshots the checkpoint kept.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from ..denoisers.registry import load_denoiser
from ..typicality.score import score_labels
from .metrics import pixel_average_precision


def localisation_by_label(maps_by_label: dict[str, np.ndarray], images: pl.DataFrame, boxes: pl.DataFrame) -> dict:
    """maps_by_label: label_key -> (B, h, w) maps in the order of that
    label's rows of `images`. Labels without a boxed image are left out."""
    per_label, counts = {}, {}
    for key, maps in maps_by_label.items():
        rows = images.filter(pl.col("label_key") == key)
        ap, n = pixel_average_precision(maps, rows, boxes)
        if n:
            per_label[key], counts[key] = round(ap, 4), n
    mean = float(np.mean(list(per_label.values()))) if per_label else float("nan")
    return {"localisation_ap": round(mean, 4), "localisation_labels": len(per_label), "localisation_ap_by_label": per_label,
            "localisation_image_counts": counts}


def localisation_chance(images: pl.DataFrame, boxes: pl.DataFrame) -> float:
    """The figure of a map that knows nothing: per image the share of its
    pixels inside the label's boxes, averaged like the figure itself."""
    own = boxes.filter(pl.col("role") == "label")
    sizes = {r["image_id"]: (r["width"], r["height"], r["label_key"]) for r in images.iter_rows(named=True)}
    by_label: dict[str, list[float]] = {}
    for (image_id,), group in own.group_by("image_id"):
        if image_id not in sizes:
            continue
        w, h, key = sizes[image_id]
        mask = np.zeros((h, w), dtype=bool)
        for b in group.iter_rows(named=True):
            mask[b["y0"] : b["y1"], b["x0"] : b["x1"]] = True
        by_label.setdefault(key, []).append(float(mask.mean()))
    return round(float(np.mean([np.mean(v) for v in by_label.values()])), 4) if by_label else float("nan")


def boxed_images(images: pl.DataFrame, boxes: pl.DataFrame, per_label: int) -> pl.DataFrame:
    """The images holding a box of their own label, at most `per_label` of
    each label (the first by image_id: the same ones at every step)."""
    own = boxes.filter(pl.col("role") == "label").select("image_id").unique()
    return images.join(own, on="image_id").sort("label_key", "image_id").group_by("label_key", maintain_order=True).head(per_label)


def maps_of(model, images: pl.DataFrame, typ_opts, dataset_images: pl.DataFrame | None = None) -> dict[str, np.ndarray]:
    """Own-label typicality maps (mean over replicates) of `images` under
    `model`, with the graph's estimator and its dataset-wide noise (drawn
    from the pilot of `dataset_images`, default `images`, as the graph does)."""
    groups = score_labels(model, images, typ_opts, pilot=dataset_images if dataset_images is not None else images)
    return {g.key: g.maps for g in groups}


def localisation_curve(snapshots: list[tuple[int, Path]], images: pl.DataFrame, boxes: pl.DataFrame, typ_opts,
                       log: Callable[[str], None] = print, dataset_images: pl.DataFrame | None = None) -> list[dict]:
    """The localisation figure at every kept step of a training run (the
    same images and noise at each), one row per step."""
    rows = []
    for step, folder in snapshots:
        t0 = time.monotonic()
        model = load_denoiser(folder)
        figs = localisation_by_label(maps_of(model, images, typ_opts, dataset_images), images, boxes)
        rows.append({"step": step, "localisation_ap": figs["localisation_ap"], "by_label": figs["localisation_ap_by_label"]})
        log(f"  step {step}: localisation AP {figs['localisation_ap']:.4f} ({time.monotonic() - t0:.1f} s)")
    return rows
