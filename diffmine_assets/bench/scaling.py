"""`diffmine bench scaling`: how the cost of typicality and of the
correspondence baseline grows with the number of images (issue 16).

For each size the built-in dataset is generated anew with that many images
(same resolution, same seed, labels in equal shares) and mined three ways,
each timed on its own: diffmine given a trained checkpoint (typicality maps
and patches of every label), diffmine with its training counted, and the
correspondence baseline (every label against the others). Both methods' top-1
hit rate is scored on the same boxes. The slope of log time against log
images says how each method scales; the crossover is the smallest measured
size from which diffmine, training counted, is faster at every larger size.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from ..mining.baselines.correspondence import correspondence_patches
from ..mining.config.project import with_overrides
from ..mining.evaluation.metrics import top1_hit_rate
from ..mining.patches import patch_table
from ..mining.report.pictures import line_chart
from ..mining.training.checkpoints import discard_state, fit
from ..mining.typicality.score import score_labels
from ..storage.lake import Lake
from .common import prepare, set_overrides

SIZES = (100, 200, 400, 800, 1600)


def _mine(model, images: pl.DataFrame, spec) -> pl.DataFrame:
    """Every label's top patches, as the graph mines them."""
    groups = score_labels(model, images, spec.typicality, pilot=images)
    return pl.concat([patch_table(g.table("bench"), g.replicate_maps, spec.patches)[0] for g in groups])


def slope(sizes: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(seconds) against log(images)."""
    return float(np.polyfit(np.log(np.asarray(sizes, float)), np.log(np.asarray(seconds, float)), 1)[0])


def crossover(sizes: list[int], diffmine_s: list[float], baseline_s: list[float]) -> int | None:
    """The smallest measured size from which diffmine is faster at every
    measured size at or above it; None if it never is."""
    best = None
    for i in range(len(sizes) - 1, -1, -1):
        if diffmine_s[i] < baseline_s[i]:
            best = sizes[i]
        else:
            break
    return best


def scaling_run(spec, work: Path, sizes=SIZES, log=print) -> dict:
    """Time both methods at each size; `spec` is a built-in dataset's spec."""
    if spec.kind != "builtin":
        raise ValueError("bench scaling generates its data: give a built-in dataset")
    labels = 4 if getattr(spec.options, "preset", "planted") == "planted" else 10
    rows = []
    for n in sizes:
        per_label = max(2, n // labels)
        sized = spec.model_copy(update={"options": spec.options.model_copy(update={"images_per_label": per_label})})
        images, boxes = prepare(sized, work / f"images-{per_label * labels}")
        model_dir = work / f"model-{per_label * labels}"
        discard_state(model_dir)  # an interrupted earlier run's state would be resumed, and its time not counted
        t0 = time.monotonic()
        fitted = fit(spec.name, images, sized.training, sized.options.resolution, f"scaling-{per_label}", model_dir)
        train_s = time.monotonic() - t0
        t0 = time.monotonic()
        ours = _mine(fitted.model, images, sized)
        mine_s = time.monotonic() - t0
        t0 = time.monotonic()
        opts = sized.baseline.for_window(sized.patches.window_px)
        theirs = pl.concat([correspondence_patches(images, key, opts, sized.patches.per_image, sized.patches.per_label)[0]
                            for key in sorted(images["label_key"].unique().to_list())])
        base_s = time.monotonic() - t0
        row = {"images": len(images), "train_s": round(train_s, 2), "diffmine_s": round(mine_s, 2), "diffmine_with_training_s": round(train_s + mine_s, 2),
               "baseline_s": round(base_s, 2), "training_steps": fitted.result.steps, "resumed_from_step": fitted.result.resumed_from,
               "top1_hit_rate": round(top1_hit_rate(ours, boxes, images)[0], 4), "top1_hit_rate_baseline": round(top1_hit_rate(theirs, boxes, images)[0], 4)}
        log(f"{row['images']:>6} images: diffmine {mine_s:.1f} s (+ training {train_s:.1f} s), baseline {base_s:.1f} s; "
            f"top-1 {row['top1_hit_rate']:.3f} vs {row['top1_hit_rate_baseline']:.3f}")
        rows.append(row)
    n = [r["images"] for r in rows]
    out = {"sizes": n, "runs": rows}
    if len(rows) > 1:
        out.update({
            "diffmine_slope": round(slope(n, [r["diffmine_s"] for r in rows]), 3),
            "diffmine_with_training_slope": round(slope(n, [r["diffmine_with_training_s"] for r in rows]), 3),
            "baseline_slope": round(slope(n, [r["baseline_s"] for r in rows]), 3),
        })
    out["crossover_images"] = crossover(n, [r["diffmine_with_training_s"] for r in rows], [r["baseline_s"] for r in rows])
    out["quality_by_size"] = {r["images"]: {"diffmine": r["top1_hit_rate"], "baseline": r["top1_hit_rate_baseline"]} for r in rows}
    return out


def bench_scaling(project, dataset: str, sizes: list[int], overrides: dict, log=print) -> dict:
    """`diffmine bench scaling`: both methods timed at each size; the
    figures and a log-log chart of the times are kept under the dataset's
    files (the report shows the chart)."""
    spec = project.dataset(dataset)
    spec = with_overrides(spec, overrides) if overrides else spec
    if spec.training.by_evidence:
        # a time-set length would make every size train equally long: passes, so training grows with the images as measured
        spec = with_overrides(spec, {"training.epochs": 60})
    lake = Lake(project.lake)
    work = lake.files_dir(dataset, "bench", "scaling")
    log(f"bench scaling: {dataset} at {sizes} images, {torch.get_num_threads()} threads")
    figures = {"dataset": dataset, **scaling_run(spec, work, sizes, log=log), "overrides": overrides, "threads": torch.get_num_threads()}
    runs = figures["runs"]
    lg = lambda v: float(np.log10(max(v, 1e-3)))  # noqa: E731
    chart = line_chart({
        "diffmine": [(lg(r["images"]), lg(r["diffmine_s"])) for r in runs],
        "diffmine + training": [(lg(r["images"]), lg(r["diffmine_with_training_s"])) for r in runs],
        "correspondence": [(lg(r["images"]), lg(r["baseline_s"])) for r in runs],
    }, "cost against the number of images (log-log)", xlabel="log10 images", ylabel="log10 seconds")
    work.mkdir(parents=True, exist_ok=True)
    chart.save(work / "scaling.png")
    (work / "scaling.json").write_text(json.dumps(figures, indent=2, default=str))
    return figures


def run(project, args, log) -> dict:
    return bench_scaling(project, args.dataset, [int(s) for s in args.sizes.split(",")], set_overrides(args.set), log=log)
