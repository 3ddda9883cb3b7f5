"""`diffmine bench training`: how well a training recipe learns a dataset's
labels, measured without the asset graph.

One run trains the dataset's denoiser with the given options (or a control:
the same training on shuffled labels) and scores its held-out images the way
the graph would (`score_model`): the label-gain diagnostic per timestep band,
the held-out accuracy of the label matrix, and, where the dataset has element
boxes, the top-1 hit rate and per-pixel average precision of the own-label
maps. It is the command behind every row of the quality table in
docs/QUALITY.md. With `--curve 2,5,10,...` it is the quality-against-time
curve: one such run per number of minutes, each trained to that time alone.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import polars as pl

from ..mining.config.project import with_overrides
from ..mining.evaluation.controls import control_recipe, shuffled_labels
from ..mining.evaluation.metrics import chance_levels
from ..mining.evaluation.scoring import score_model
from ..mining.report.pictures import figures_by_time
from ..mining.training.checkpoints import discard_state, evidence_ids_of, fit
from ..mining.training.diagnostics import BandGain, gain_over
from ..storage.lake import Lake
from .common import mean_sd, prepare, set_overrides


@dataclass
class QualityRun:
    figures: dict
    chance: dict
    checkpoint: dict | None = None  # the trained checkpoint's row


def score_held_out(model, images: pl.DataFrame, boxes: pl.DataFrame | None, typ_opts, patch_opts) -> tuple[dict, dict]:
    """Figures (and their chance levels) of `model` on the held-out images
    (split 'val'), scored under their true labels with the graph's own estimator."""
    scores = score_model(model, images.filter(pl.col("split") == "val"), boxes, typ_opts, patch_opts, dataset_images=images, checkpoint_id="bench")
    figures = {k: v for k, v in scores.figures.items() if k.startswith("accuracy_val")}
    # a one-label model has no label matrix: no accuracy to report
    chance = {"accuracy_val": scores.figures.get("accuracy_chance")}
    if boxes is not None:
        figures.update({k: scores.figures[k] for k in ("top1_hit_rate", "pixel_auc_pr")})
        chance.update(chance_levels(scores.patches, boxes, scores.images))
    figures["scoring_seconds"] = round(scores.seconds, 1)
    return figures, chance


def quality_run(spec, images: pl.DataFrame, boxes: pl.DataFrame | None, work_dir: Path, *, control: str | None = None,
                progress: Callable[[dict], None] | None = None, model_row: dict | None = None) -> QualityRun:
    """Train with `spec.training` (on shuffled labels when control is
    "shuffled", trained as the model in `model_row` was: its steps, or its
    evidence run's schedule stopped at its published step) and score the
    held-out images."""
    train_images = shuffled_labels(images, spec.training.seed) if control == "shuffled" else images
    options, stop_after = control_recipe(spec.training, model_row) if control and model_row else (spec.training, None)
    discard_state(work_dir)  # a whole training is timed, never the rest of an interrupted one
    t0 = time.monotonic()
    evidence = evidence_ids_of(model_row["path"]) if stop_after is not None else None
    fitted = fit(spec.name, train_images, options, spec.options.resolution, "bench", work_dir, progress, stop_after=stop_after, evidence_ids=evidence)
    train_s = time.monotonic() - t0
    figures, chance = score_held_out(fitted.model, images, boxes, spec.typicality, spec.patches)
    T = fitted.model.num_train_timesteps
    bands = fitted.result.diagnostics[-1]["bands"] if fitted.result.diagnostics else []
    gains = [BandGain.from_dict(b) for b in bands]
    figures.update({
        "label_gain_in_range": gain_over(gains, spec.typicality.t_min * T, spec.typicality.t_max * T),
        "label_gain_by_band": [round(b.gain, 6) for b in gains],
        "steps": fitted.table["steps"][0],
        "trained_steps": fitted.result.steps,
        "stopped_by": fitted.result.stopped_by,
        "augmentation": fitted.result.augmentation.describe(),
        "resumed_from_step": fitted.result.resumed_from,
        "train_seconds": round(train_s, 1),
        "images_per_s": round(fitted.result.steps * spec.training.batch_size / max(fitted.result.seconds, 1e-9), 1),
        "final_val_loss": fitted.table["final_val_loss"][0],
        "checkpoint_id": fitted.checkpoint_id,
    })
    return QualityRun(figures, chance, fitted.table.row(0, named=True))


def summarise(runs: list[dict], keys=("accuracy_val", "top1_hit_rate", "pixel_auc_pr", "label_gain_in_range", "steps", "train_seconds")) -> dict:
    """Mean and standard deviation over seeds of each figure."""
    return {k: s for k in keys if (s := mean_sd([r.get(k) for r in runs])) is not None}


def bench_training(project, dataset: str, overrides: dict, seeds: list[int], data_seed: int | None, control: str | None, log=print) -> dict:
    """Train with the dataset's options (and overrides) on each seed, score
    the held-out images, and summarise."""
    lake = Lake(project.lake)
    spec = project.dataset(dataset)
    if data_seed is not None:
        overrides = {**overrides, "options.seed": data_seed}
    spec = with_overrides(spec, overrides) if overrides else spec
    work = lake.files_dir(dataset, "bench")
    images, boxes = prepare(spec, work / f"data-{getattr(spec.options, 'seed', 0)}")
    runs = []
    model_row = None
    for seed in seeds:
        run_spec = with_overrides(spec, {"training.seed": seed})
        for kind in [None] + ([control] if control else []):
            name = kind or "model"
            log(f"seed {seed}: training the {name} ({len(images)} images, {images['label_key'].n_unique()} labels) ...")
            digest = hashlib.sha256(f"{run_spec.training.model_dump_json()}{run_spec.options.model_dump_json()}".encode()).hexdigest()[:12]
            target = work / "runs" / f"{name}-seed{seed}-{digest}"

            def progress(row, name=name):
                if "quick_accuracy" in row:
                    log(f"  {name} step {row['step']}: quick held-out accuracy {row['quick_accuracy']:.3f}")
                elif "loss" in row and (row["step"] % max(1, run_spec.training.log_every) == 0):
                    log(f"  {name} step {row['step']}/{row['total_steps']}  loss {row['loss']:.4f}  {row['images_per_s']:.0f} images/s")

            run = quality_run(run_spec, images, boxes, target, control=kind, progress=progress, model_row=model_row if kind else None)
            if kind is None:
                model_row = run.checkpoint
            runs.append({"seed": seed, "kind": name, **run.figures, "chance": run.chance})
            log(f"  {name}: " + ", ".join(f"{k} {run.figures[k]}" for k in ("accuracy_val", "top1_hit_rate", "pixel_auc_pr", "label_gain_in_range", "train_seconds") if k in run.figures))
    model_runs = [r for r in runs if r["kind"] == "model"]
    out = {"dataset": dataset, "seeds": seeds, "data_seed": getattr(spec.options, "seed", None), "overrides": overrides,
           "model": summarise(model_runs), "chance": model_runs[0]["chance"] if model_runs else {}, "runs": runs,
           "training": spec.training.model_dump(mode="json"), "typicality": spec.typicality.model_dump(mode="json")}
    if control:
        out["control"] = {"kind": control, **summarise([r for r in runs if r["kind"] == control])}
    return out


# axis labels of the figures a curve may chart (those the dataset has are charted)
CURVE_PANELS = {"accuracy_val": "held-out accuracy", "top1_hit_rate": "top-1 hit rate", "pixel_auc_pr": "pixel AP"}
# options a curve sets itself at each point
CURVE_SETS = ("training.steps", "training.epochs", "training.time_budget")


def bench_curve(project, dataset: str, overrides: dict, seeds: list[int], data_seed: int | None, minutes: list[float], control: str | None,
                log=print) -> dict:
    """Quality against training time. At each number of `minutes`, the
    dataset's recipe (with `overrides`) given that time alone: steps and
    epochs cleared, so the length is sized from the first timed steps (and
    again at each check) and the cosine schedule anneals to it, as a default run's does to what its
    run target leaves (snapshots of one long run would score weights that
    had not annealed). Two limits: a point shorter than the warm-up ends
    while the learning rate still rises, and with `patience` set the
    published weights are the best check's. The model and, with `control`,
    the same training on shuffled labels, over `seeds`; the steps each
    point bought are in the table (they follow the machine's speed, so
    a loaded machine buys fewer); a chart of each figure against minutes
    beside each run's own chance level (the top-1 chance depends on the
    windows a model keeps)."""
    if not minutes or any(m <= 0 for m in minutes):
        raise ValueError(f"--curve wants minutes above 0, got {minutes}")
    if fixed := [k for k in overrides if k in CURVE_SETS]:
        raise ValueError(f"--curve sets {', '.join(CURVE_SETS)} itself at each point; drop --set {', '.join(fixed)}")
    minutes = sorted(set(minutes))
    points = []
    for m in minutes:
        log(f"curve: {m:g} min of training")
        timed = {**overrides, "training.steps": None, "training.epochs": None, "training.time_budget": m * 60.0}
        got = bench_training(project, dataset, timed, seeds, data_seed, control, log)
        chance = {kind: summarise([r["chance"] for r in got["runs"] if r["kind"] == kind], keys=tuple(CURVE_PANELS))
                  for kind in ("model", control) if kind}
        points.append({"minutes": m, "model": got["model"], "control": got.get("control", {}), "chance": chance, "runs": got["runs"]})
    panels = {k: v for k, v in CURVE_PANELS.items() if any(k in p["model"] for p in points)}
    out = {"dataset": dataset, "seeds": seeds, "data_seed": got["data_seed"], "overrides": overrides, "minutes": minutes, "points": points,
           "training": got["training"], "typicality": got["typicality"]}
    log("curve: minutes | steps | " + " | ".join(f"{k}: model (chance) / control (chance)" for k in panels) + " | augmentation")
    for p in points:
        cells = [f"{_mean(p['model'], k)} ({_mean(p['chance']['model'], k)}) / {_mean(p['control'], k)} ({_mean(p['chance'].get(control), k)})"
                 for k in panels]
        # shift: auto may decide differently at each point (its passes): said beside each
        shifts = sorted({r.get("augmentation", "") for r in p["runs"] if r["kind"] == "model"})
        log(f"curve: {p['minutes']:g} | {_mean(p['model'], 'steps', '.0f')} | " + " | ".join(cells) + f" | {'; '.join(shifts)}")
    if panels:
        out_dir = Lake(project.lake).files_dir(dataset, "bench") / "curves"
        out_dir.mkdir(parents=True, exist_ok=True)
        chart = out_dir / f"curve-data{got['data_seed']}-seeds{'_'.join(map(str, seeds))}-{'_'.join(f'{m:g}' for m in minutes)}min.png"
        figures_by_time(points, panels, f"{dataset} (data seed {got['data_seed']}): quality against training time, {len(seeds)} seed(s)").save(chart)
        out["chart"] = str(chart)
        log(f"curve: chart {chart}")
    return out


def _mean(summary: dict | None, key: str, fmt: str = ".3f") -> str:
    s = (summary or {}).get(key)
    return "-" if s is None else format(s["mean"], fmt)


def run(project, args, log) -> dict:
    seeds = [int(s) for s in args.seeds.split(",")]
    control = None if args.control == "none" else args.control
    if args.curve:
        return bench_curve(project, args.dataset, set_overrides(args.set), seeds, args.data_seed, [float(m) for m in args.curve.split(",")], control, log)
    return bench_training(project, args.dataset, set_overrides(args.set), seeds, args.data_seed, control, log)
