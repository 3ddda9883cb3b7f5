"""Every quality figure of a dataset's stored results, beside its chance
level and, when asked, the same figures of a control model scored the same
way: what the `evaluation` asset stores and `diffmine eval` prints."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from ..arrays import load_array
from ..report.visuals import curve_picture
from ..training.checkpoints import snapshots_of
from .as_made import spec_as_made, translations_as_made
from .controls import control_model
from .goals import TRANSLATION_METRICS, judge, preset_of
from .localisation import boxed_images, localisation_by_label, localisation_chance, localisation_curve
from .intervals import figure_gaps
from .metrics import chance_levels, classification_figures, classification_items, cluster_figures, distractor_share, top1_hits, typicality_figures, typicality_items
from .scoring import score_model
from .translations import translation_evaluation

MIN_CURVE_POINTS = 5


@dataclass
class StoredResults:
    """A dataset's tables as the graph stored them (every label's rows of a
    per-label table; None where a table is not materialized for every label)."""

    images: pl.DataFrame
    checkpoint: dict | None  # the current checkpoint's row
    typicality: pl.DataFrame | None
    label_matrix: pl.DataFrame | None = None
    boxes: pl.DataFrame | None = None
    patches: pl.DataFrame | None = None
    members: pl.DataFrame | None = None
    baseline: pl.DataFrame | None = None
    translations: pl.DataFrame | None = None
    clusters: pl.DataFrame | None = None

    def made_spec(self, spec, log: Callable[[str], None] = print):
        """`spec` with the options these results were made with, where their records say (as_made.py)."""
        return spec_as_made(spec, self.checkpoint, self.typicality, self.patches, self.translations, log, clusters=self.clusters)


def evaluate(dataset: str, stored: StoredResults, spec, files: Callable[..., Path], control: str = "shuffled", curve: bool = False,
             curve_images: int = 32, log: Callable[[str], None] = print) -> dict:
    """Every quality figure of the stored results, beside its chance level
    and, unless `control` is "none", the same figures for a control model
    scored the same way; `curve`: localisation along training too. `files`
    makes a path under the dataset's files folder (controls, pictures).
    `spec` is the dataset's with the options the results were made with
    (`stored.made_spec`), so controls, chance levels and regenerations are
    made as the stored results were, whatever the config says now."""
    images, ckpt, boxes = stored.images, stored.checkpoint, stored.boxes
    keys = sorted(images["label_key"].unique().to_list())
    if ckpt is None:
        raise ValueError(f"dataset {dataset!r} has no checkpoint yet; run diffmine materialize --dataset {dataset}")
    if stored.typicality is None:
        raise ValueError(f"dataset {dataset!r}: typicality is not materialized for every label; run diffmine materialize --dataset {dataset}")
    typ_all = stored.typicality
    figures: dict = {"dataset": dataset, "checkpoint_id": ckpt["checkpoint_id"], "labels": len(keys), "images": len(images)}
    figures["checkpoints_used"] = sorted(typ_all["checkpoint_id"].unique().to_list())
    items = []  # per image and figure, the model's value and its chance: what the intervals resample
    if stored.label_matrix is not None and "predicted" in stored.label_matrix.columns:
        figures.update(classification_figures(stored.label_matrix, images))
        items.append(classification_items(stored.label_matrix, images))
    chance: dict = {"accuracy_val": figures.get("accuracy_chance")}
    if boxes is not None:
        maps, ordered = {}, []
        for key in keys:
            typ = typ_all.filter(pl.col("label_key") == key).sort("map_index")
            maps[key] = load_array(typ["map_path"][0]).astype(np.float32).mean(axis=1)
            ordered.append(images.join(typ.select("image_id", "map_index"), on="image_id").sort("map_index"))
        ordered = pl.concat(ordered)
        items.append(typicality_items(stored.patches, boxes, ordered, maps))
        figures.update(typicality_figures(stored.patches, boxes, ordered, maps, items[-1]))
        chance.update(chance_levels(stored.patches, boxes, ordered))
        figures.update(localisation_by_label(maps, ordered, boxes))
        chance["localisation_ap"] = localisation_chance(ordered, boxes)
        if stored.members is not None:
            figures.update(cluster_figures({k: stored.members.filter(pl.col("label_key") == k) for k in keys}, boxes))
        if stored.baseline is not None:
            # the correspondence baseline on the same images and boxes (its windows are its own, so no pixel map)
            hits = top1_hits(stored.baseline, boxes, ordered)
            figures["top1_hit_rate_correspondence"] = round(float(hits["value"].mean()), 4) if len(hits) else float("nan")
            # its chance is the model's (the same images, the same window grid)
            model_chance = items[-1].filter(pl.col("figure") == "top1_hit_rate").select("image_id", "chance")
            items.append(hits.join(model_chance, on="image_id", how="left").select("image_id", pl.lit("top1_hit_rate_correspondence").alias("figure"), "value", "chance"))
            figures["distractor_share_top50_correspondence"] = round(distractor_share(stored.baseline, boxes, 50), 4)
            chance["top1_hit_rate_correspondence"] = chance.get("top1_hit_rate")
            chance["distractor_share_top50_correspondence"] = chance.get("distractor_share_top50")
    figures["chance"] = chance
    translated = stored.translations
    if translated is not None and not translated.is_empty() and len(keys) > 1:
        with_control = control != "none"
        log("translations: scoring the stored ones and their sources left untranslated (the chance level)"
            + (", then plain regeneration (no injection) of the same images, their control ..." if with_control else " ..."))
        tf, tc = translation_evaluation(translated, typ_all, images, boxes, ckpt, translations_as_made(spec, translated, log), files, with_control)
        chance.update(tf.pop("chance"))
        figures.update(tf)
        if tc is not None:
            figures["translation_control"] = {"kind": "plain regeneration", **{k: v for k, v in tc.items() if k != "chance"}}
    ctrl_path, ctrl_items = None, None
    if control != "none":
        ctrl, ctrl_path, ctrl_steps = control_model(control, spec, ckpt, images, files("controls"), log)
        log(f"scoring the {control} control like the model ...")
        scored = score_model(ctrl, images, boxes, spec.typicality, spec.patches)
        c, ctrl_items = scored.figures, scored.items
        # a control that did not get the model's steps is flagged, never silently compared
        figures["control"] = {"kind": control, **c, "steps": ctrl_steps, "model_steps": ckpt.get("steps"),
                              "same_budget": None if ctrl_steps is None else ctrl_steps == ckpt.get("steps")}
        for key in ("pixel_auc_pr", "localisation_ap", "accuracy_val"):
            if key in figures and c.get(key):
                figures[f"{key}_over_{control}"] = round(figures[key] / c[key], 3)
    if items:
        # the mining figures' paired differences from chance and from the control, image by image, with their intervals
        figures["gaps"] = {**figure_gaps(pl.concat(items), ctrl_items, None if control == "none" else control), **(figures.get("gaps") or {})}
    if curve:
        figures["localisation_curve"] = localisation_along_training(dataset, spec, ckpt, boxes, images, ctrl_path, control, chance, curve_images, files, log)
    figures["goals_met"] = judge(figures, preset_of(spec))
    return figures


def localisation_along_training(dataset: str, spec, ckpt: dict, boxes, images: pl.DataFrame, control_path, control: str, chance: dict,
                                per_label: int, files: Callable[..., Path], log=print) -> dict:
    """The localisation figure at every snapshot of the checkpoint's training
    (and of the shuffled control's), on the same boxed images: a table and a
    chart kept under the dataset's files."""
    if boxes is None or boxes.is_empty():
        raise ValueError(f"dataset {dataset!r} has no ground-truth boxes: a localisation curve needs some (declare a boxes: file)")
    snaps = snapshots_of(ckpt["path"])
    if len(snaps) < MIN_CURVE_POINTS:
        raise ValueError(f"checkpoint {ckpt['checkpoint_id']} kept {len(snaps)} snapshots along its training; a curve needs {MIN_CURVE_POINTS}: "
                         f"set training.snapshots (now {spec.training.snapshots}) to 4 or more and re-materialize the checkpoint")
    rows = boxed_images(images, boxes, per_label)
    log(f"localisation curve: {len(snaps)} snapshots x {len(rows)} boxed images (at most {per_label} a label) ...")
    curves = {"model": localisation_curve(snaps, rows, boxes, spec.typicality, log, images)}
    if control_path is not None:
        log(f"localisation curve of the {control} control ...")
        curves[control] = localisation_curve(snapshots_of(control_path), rows, boxes, spec.typicality, log, images)
    path = files("evaluation", ckpt["checkpoint_id"], "localisation_curve.png")
    curve_picture(curves, chance.get("localisation_ap", float("nan")), path, f"{dataset}: localisation AP along training")
    return {**curves, "chance": chance.get("localisation_ap"), "images": len(rows), "picture": str(path)}


def evaluation_table(figures: dict, spec) -> pl.DataFrame:
    """The figures as rows (label, metric, value, chance, control, and the
    95 % interval where one was measured): every number of `evaluate`,
    per-label figures under their label, the others under "all"; the
    translations' paired differences from their controls as `<figure>_minus_<control>`."""
    control = figures.get("control") or {}
    translation_control = figures.get("translation_control") or {}
    chance = figures.get("chance") or {}
    rows = []
    for metric, value in figures.items():
        if isinstance(value, bool) or metric in ("labels", "images", "chance", "control", "translation_control", "goals_met", "checkpoints_used", "accuracy_chance", "translations"):
            continue
        if metric.endswith("_images") or metric.endswith("_translations"):  # counts behind a figure, not figures
            continue
        if isinstance(value, (int, float)) and metric in TRANSLATION_METRICS:
            rows.append(("all", metric, float(value), chance.get(metric), translation_control.get(metric), translation_control.get("kind")))
        elif isinstance(value, (int, float)):
            rows.append(("all", metric, float(value), chance.get(metric), control.get(metric), control.get("kind")))
        elif isinstance(value, dict) and metric.endswith("_by_label"):
            base = metric[: -len("_by_label")]
            for label, v in value.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    rows.append((label, base, float(v), chance.get(base) if chance.get(base) is not None else figures.get("accuracy_chance"), None, None))
    rows = [(*r, None, None) for r in rows]
    for name, gap in (figures.get("gaps") or {}).items():
        # a paired difference: its null is 0, its interval is the 95 % bootstrap over images
        low, high = gap.get("low"), gap.get("high")  # None: too few images for an interval
        rows.append(("all", name, float(gap["difference"]), 0.0, None, None, None if low is None else float(low), None if high is None else float(high)))
    params = json.dumps({name: getattr(spec, name).model_dump(mode="json") for name in ("training", "typicality", "patches", "features", "clusters", "translation")},
                        sort_keys=True)
    return pl.DataFrame(
        {
            "dataset": [figures["dataset"]] * len(rows),
            "label": [r[0] for r in rows],
            "metric": [r[1] for r in rows],
            "value": [r[2] for r in rows],
            "chance": [None if r[3] is None else float(r[3]) for r in rows],
            "control": [None if r[4] is None or isinstance(r[4], bool) else float(r[4]) for r in rows],
            "control_kind": [r[5] if r[4] is not None else None for r in rows],
            "interval_low": [r[6] for r in rows],
            "interval_high": [r[7] for r in rows],
            "checkpoint_id": [figures["checkpoint_id"]] * len(rows),
            "params": [params] * len(rows),
            "evaluated_at": [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())] * len(rows),
        },
        schema={"dataset": pl.String, "label": pl.String, "metric": pl.String, "value": pl.Float64, "chance": pl.Float64, "control": pl.Float64,
                "control_kind": pl.String, "interval_low": pl.Float64, "interval_high": pl.Float64, "checkpoint_id": pl.String, "params": pl.String, "evaluated_at": pl.String},
    )
