"""How well a training recipe learns a dataset's labels, measured without the
asset graph: `diffmine bench training`.

One run trains the dataset's denoiser with the given options (or a control:
the same training on shuffled labels) and scores its held-out images the way
the graph would: the label-gain diagnostic per timestep band, the held-out
accuracy of the label matrix, and, where the dataset has element boxes, the
top-1 hit rate and per-pixel average precision of the own-label maps. It is
the command behind every row of the quality table in docs/QUALITY.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from .checkpoints import fit
from .controls import shuffled_labels
from .datasets.ingest import ground_truth_boxes, ingest
from .diagnostics import BandGain, gain_over
from .evaluation import chance_levels, classification_figures, typicality_figures
from .tables import image_typicality_table, label_matrix_table, patch_table
from .tensors import load_pixels, to_model_range
from .typicality import dataset_noise, label_scores, pilot_rows, typicality_maps


@dataclass
class QualityRun:
    figures: dict
    chance: dict


def prepare(spec, files_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The dataset's images table (ingesting it, as the `images` asset does)
    and its element boxes, if it has any."""
    result = ingest(spec.name, spec, files_dir)
    if result.images.is_empty():
        raise ValueError(f"dataset {spec.name!r} has no usable image")
    return result.images, ground_truth_boxes(spec.name, spec, result.images)


def score_held_out(model, images: pl.DataFrame, boxes: pl.DataFrame | None, typ_opts, patch_opts, split: str = "val") -> tuple[dict, dict]:
    """Figures (and their chance levels) of `model` on the images of `split`,
    scored under their true labels with the graph's own estimator."""
    held = images.filter(pl.col("split") == split)
    pilot = pilot_rows(images)
    noise = dataset_noise(model, model.encode(to_model_range(load_pixels(pilot["path"].to_list(), model.resolution))), pilot["label_key"].to_list(), typ_opts)
    matrices, patches, maps, ordered = [], [], {}, []
    seconds = 0.0
    for key in sorted(held["label_key"].unique().to_list()):
        rows = held.filter(pl.col("label_key") == key)
        x0 = model.encode(to_model_range(load_pixels(rows["path"].to_list(), model.resolution)))
        res = typicality_maps(model, x0, [key], typ_opts, noise=noise)
        scores = label_scores(model, x0, res, key, list(model.labels), typ_opts)
        seconds += res.seconds + scores.seconds
        matrices.append(label_matrix_table(rows, key, scores, "bench"))
        if boxes is not None:
            table = image_typicality_table(rows, key, res, typ_opts, "bench", "-")
            p, _ = patch_table(table, res.replicate_maps[:, 0].numpy(), patch_opts)
            patches.append(p)
            maps[key] = res.maps[:, 0].numpy()
            ordered.append(rows)
    figures = classification_figures(pl.concat(matrices), images, split)
    chance = {f"accuracy_{split}": figures.pop("accuracy_chance")}
    if boxes is not None:
        patches_df, ordered_df = pl.concat(patches), pl.concat(ordered)
        box_figs = typicality_figures(patches_df, boxes, ordered_df, maps)
        figures.update({k: box_figs[k] for k in ("top1_hit_rate", "pixel_auc_pr")})
        chance.update(chance_levels(patches_df, boxes, ordered_df))
    figures["scoring_seconds"] = round(seconds, 1)
    return figures, chance


def quality_run(spec, images: pl.DataFrame, boxes: pl.DataFrame | None, work_dir: Path, *, control: str | None = None,
                progress: Callable[[dict], None] | None = None) -> QualityRun:
    """Train with `spec.training` (on shuffled labels when control is
    "shuffled") and score the held-out images."""
    train_images = shuffled_labels(images, spec.training.seed) if control == "shuffled" else images
    t0 = time.monotonic()
    fitted = fit(spec.name, train_images, spec.training, spec.options.resolution, "bench", work_dir, progress)
    train_s = time.monotonic() - t0
    figures, chance = score_held_out(fitted.model, images, boxes, spec.typicality, spec.patches)
    T = fitted.model.num_train_timesteps
    bands = fitted.result.diagnostics[-1]["bands"] if fitted.result.diagnostics else []
    gains = [BandGain(b["t_lo"], b["t_hi"], b["gain"], b["stderr"], b["null_loss"]) for b in bands]
    figures.update({
        "label_gain_in_range": gain_over(gains, spec.typicality.t_min * T, spec.typicality.t_max * T),
        "label_gain_by_band": [round(b.gain, 6) for b in gains],
        "steps": fitted.result.steps,
        "train_seconds": round(train_s, 1),
        "images_per_s": round(fitted.result.steps * spec.training.batch_size / max(fitted.result.seconds, 1e-9), 1),
        "final_val_loss": fitted.table["final_val_loss"][0],
        "checkpoint_id": fitted.checkpoint_id,
    })
    return QualityRun(figures, chance)


def summarise(runs: list[dict], keys=("accuracy_val", "top1_hit_rate", "pixel_auc_pr", "label_gain_in_range", "train_seconds")) -> dict:
    """Mean and standard deviation over seeds of each figure."""
    out = {}
    for k in keys:
        vals = [r[k] for r in runs if r.get(k) is not None and r[k] == r[k]]
        if vals:
            out[k] = {"mean": round(float(np.mean(vals)), 4), "sd": round(float(np.std(vals, ddof=1)), 4) if len(vals) > 1 else None, "n": len(vals)}
    return out
