"""`diffmine eval` and `diffmine bench typicality`: figures computed from the
lake's tables (no Dagster needed), each ending in one JSON line."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from .mining.bench import run_benchmark
from .mining.checkpoints import load_checkpoint
from .mining.denoisers import BACKENDS
from .mining.evaluation import cluster_figures, score_model, typicality_figures
from .mining.tables import load_array
from .mining.tensors import load_pixels, to_model_range
from .storage.lake import Lake

GOALS = {
    "top1_hit_rate": (">=", 0.9),
    "distractor_share_top50": ("<=", 0.05),
    "pixel_auc_pr": (">=", 0.5),
    "cluster_purity": (">=", 0.9),
    "label_elements_found": (">=", 1.0),
    "distractor_top3_share": ("<=", 0.0),
}


def _met(value: float, op: str, bound: float) -> bool:
    return value >= bound if op == ">=" else value <= bound


def evaluate(project, dataset: str, control: bool = True, log=print) -> dict:
    lake = Lake(project.lake)
    spec = project.dataset(dataset)
    images = lake.read_partition("images", dataset)
    boxes_file = lake.partition_file("ground_truth_boxes", dataset)
    if not boxes_file.exists():
        raise ValueError(f"dataset {dataset!r} has no ground truth boxes: nothing to evaluate against")
    boxes = pl.read_parquet(boxes_file)
    keys = sorted(images["label_key"].unique().to_list())
    patches, maps, typ_rows = [], {}, []
    for key in keys:
        typ = lake.read_partition("image_typicality", dataset, key)
        patches.append(lake.read_partition("patch_typicality", dataset, key))
        maps[key] = load_array(typ["map_path"][0]).astype(np.float32).mean(axis=1)
        typ_rows.append(typ)
    typ_all = pl.concat(typ_rows)
    ckpt = lake.read_partition("checkpoint", dataset).row(0, named=True)
    ordered = pl.concat([images.filter(pl.col("image_id").is_in(t["image_id"].implode())).join(t.select("image_id", "map_index"), on="image_id").sort("map_index") for t in typ_rows])
    figures = {"dataset": dataset, "checkpoint_id": ckpt["checkpoint_id"], **typicality_figures(pl.concat(patches), boxes, ordered, maps)}
    figures["checkpoints_used"] = sorted(typ_all["checkpoint_id"].unique().to_list())
    if all(lake.partition_file("cluster_members", dataset, k).exists() for k in keys):
        figures.update(cluster_figures({k: lake.read_partition("cluster_members", dataset, k) for k in keys}, boxes))
    if control:
        log("scoring the control: the same architecture, never trained (so it never saw a label) ...")
        trained = load_checkpoint(ckpt["path"])
        cfg = trained.config()
        ctrl = BACKENDS[cfg["backend"]](cfg["labels"], cfg["resolution"], cfg.get("architecture"), seed=spec.training.seed)
        c = score_model(ctrl, ordered, boxes, spec.typicality, spec.patches)
        figures["control"] = {k: v for k, v in c.items()}
        figures["pixel_auc_pr_over_control"] = round(figures["pixel_auc_pr"] / c["pixel_auc_pr"], 3) if c["pixel_auc_pr"] > 0 else None
    goals = {k: _met(figures[k], op, bound) for k, (op, bound) in GOALS.items() if k in figures}
    if control and figures.get("pixel_auc_pr_over_control") is not None:
        goals["pixel_auc_pr_3x_control"] = figures["pixel_auc_pr_over_control"] >= 3
    figures["goals_met"] = goals
    return figures


def bench_typicality(project, dataset: str, label: str | None, images_n: int, log=print) -> dict:
    lake = Lake(project.lake)
    spec = project.dataset(dataset)
    ckpt = lake.read_partition("checkpoint", dataset).row(0, named=True)
    model = load_checkpoint(ckpt["path"])
    images = lake.read_partition("images", dataset)
    key = label or sorted(images["label_key"].unique().to_list())[0]
    rows = images.filter((pl.col("label_key") == key) | (pl.col("label") == key)).head(images_n)
    if rows.is_empty():
        raise ValueError(f"dataset {dataset!r} has no label {key!r}")
    key = rows["label_key"][0]
    size = int(rows["width"].max())
    x0 = model.encode(to_model_range(load_pixels(rows["path"].to_list(), model.resolution)))
    log(f"benchmark: {len(rows)} images of {dataset}/{key}, checkpoint {ckpt['checkpoint_id']}, {torch.get_num_threads()} threads")
    figures = run_benchmark(model, x0, key, spec.typicality, image_size=size, window=spec.patches.window_px, stride=spec.patches.stride_px, log=log)
    return {"dataset": dataset, "label_key": key, "checkpoint_id": ckpt["checkpoint_id"], **figures}
