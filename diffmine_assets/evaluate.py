"""`diffmine eval` and `diffmine bench typicality`: figures computed from the
lake's tables (no Dagster needed), each ending in one JSON line."""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl
import torch

from .mining.bench import run_benchmark
from .mining.checkpoints import load_checkpoint
from .mining.denoisers import new_denoiser
from .mining.controls import fit_shuffled_control
from .mining.localisation import localisation_by_label, localisation_chance
from .mining.evaluation import chance_levels, classification_figures, cluster_figures, distractor_share, score_model, top1_hit_rate, typicality_figures
from .mining.tables import load_array
from .mining.tensors import load_pixels, to_model_range
from .storage.lake import Lake

# Quality goals of the built-in presets (their issues), checked by `diffmine eval`.
GOALS = {
    "planted": {
        "accuracy_val": (">=", 0.95),
        "top1_hit_rate": (">=", 0.9),
        "distractor_share_top50": ("<=", 0.05),
        "pixel_auc_pr": (">=", 0.5),
        "cluster_purity": (">=", 0.9),
        "label_elements_found": (">=", 0.95),
        "distractor_top3_share": ("<=", 0.0),
        "translation_target_win": (">=", 0.9),
        "element_swap_rate": (">=", 0.7),
        "layout_ssim": (">=", 0.7),
    },
    "photo-shapes": {
        "accuracy_val": (">=", 0.9),
        "top1_hit_rate": (">=", 0.85),
        "pixel_auc_pr": (">=", 0.5),
    },
}
CONTROL_RATIO_GOAL = 3.0
# figures of the translations: their control is plain regeneration, not the shuffled model
TRANSLATION_METRICS = ("translation_target_win", "element_swap_rate", "element_swap_translations", "layout_ssim", "background_psnr_db")


def _met(value: float, op: str, bound: float) -> bool:
    return value >= bound if op == ">=" else value <= bound


def _read_all(lake: Lake, table: str, dataset: str, keys: list[str]) -> pl.DataFrame | None:
    if not all(lake.has_partition(table, dataset, k) for k in keys):
        return None
    return pl.concat([lake.read_partition(table, dataset, k) for k in keys], how="diagonal_relaxed")


def control_model(project, dataset: str, kind: str, ckpt: dict, images: pl.DataFrame, log=print):
    """The control of `kind` for the dataset's checkpoint: `shuffled` (trained
    the same way on permuted labels; trained once and kept) or `untrained`."""
    return control_checkpoint(project, dataset, kind, ckpt, images, log)[0]


def control_checkpoint(project, dataset: str, kind: str, ckpt: dict, images: pl.DataFrame, log=print):
    """(model, folder of its published checkpoint or None) of the control."""
    spec = project.dataset(dataset)
    if kind == "untrained":
        cfg = load_checkpoint(ckpt["path"]).config()
        if cfg["backend"] == "stable-diffusion":  # not finetuned: the pretrained model with the same prompts
            from .mining.denoisers.stable_diffusion import StableDiffusionDenoiser

            return StableDiffusionDenoiser.pretrained_like(ckpt["path"]), None
        return new_denoiser(spec.training, cfg["labels"], cfg["resolution"]), None
    if kind != "shuffled":
        raise ValueError(f"unknown control {kind!r}; controls are shuffled, untrained, none")
    log("control: the same training on the same images with the labels shuffled across them (trained once, then kept) ...")
    lake = Lake(project.lake)
    fitted = fit_shuffled_control(dataset, images, spec.training, spec.options.resolution, ckpt["data_version"], lake.files_dir(dataset, "controls"),
                                  progress=lambda row: row.get("step", 0) % 100 == 0 and "loss" in row and log(f"  control step {row['step']}/{row['total_steps']}"))
    return fitted.model, fitted.path


def evaluate(project, dataset: str, control: str = "shuffled", curve: bool = False, curve_images: int = 32, log=print) -> dict:
    """Every quality figure of a dataset's stored results, beside its chance
    level and, unless `control` is "none", the same figures for a control
    model scored the same way. `curve`: localisation along training too."""
    lake = Lake(project.lake)
    spec = project.dataset(dataset)
    images = lake.read_partition("images", dataset)
    keys = sorted(images["label_key"].unique().to_list())
    typ_all = _read_all(lake, "image_typicality", dataset, keys)
    if typ_all is None:
        raise ValueError(f"dataset {dataset!r}: typicality is not materialized for every label; run diffmine materialize --dataset {dataset}")
    ckpt = lake.read_partition("checkpoint", dataset).row(0, named=True)
    figures: dict = {"dataset": dataset, "checkpoint_id": ckpt["checkpoint_id"], "labels": len(keys), "images": len(images)}
    figures["checkpoints_used"] = sorted(typ_all["checkpoint_id"].unique().to_list())
    matrix = _read_all(lake, "label_matrix", dataset, keys)
    if matrix is not None and "predicted" in matrix.columns:
        figures.update(classification_figures(matrix, images))
    chance: dict = {"accuracy_val": figures.get("accuracy_chance")}
    boxes = lake.read_partition_or_none("ground_truth_boxes", dataset)
    if boxes is not None:
        patches = _read_all(lake, "patch_typicality", dataset, keys)
        maps, ordered = {}, []
        for key in keys:
            typ = typ_all.filter(pl.col("label_key") == key).sort("map_index")
            maps[key] = load_array(typ["map_path"][0]).astype(np.float32).mean(axis=1)
            ordered.append(images.join(typ.select("image_id", "map_index"), on="image_id").sort("map_index"))
        ordered = pl.concat(ordered)
        figures.update(typicality_figures(patches, boxes, ordered, maps))
        chance.update(chance_levels(patches, boxes, ordered))
        figures.update(localisation_by_label(maps, ordered, boxes))
        chance["localisation_ap"] = localisation_chance(ordered, boxes)
        members = _read_all(lake, "cluster_members", dataset, keys)
        if members is not None:
            figures.update(cluster_figures({k: members.filter(pl.col("label_key") == k) for k in keys}, boxes))
        baseline = _read_all(lake, "baseline_patches", dataset, keys)
        if baseline is not None:
            # the correspondence baseline on the same images and boxes (its windows are its own, so no pixel map)
            hit, _ = top1_hit_rate(baseline, boxes, ordered)
            figures["top1_hit_rate_correspondence"] = round(hit, 4)
            figures["distractor_share_top50_correspondence"] = round(distractor_share(baseline, boxes, 50), 4)
            chance["top1_hit_rate_correspondence"] = chance.get("top1_hit_rate")
            chance["distractor_share_top50_correspondence"] = chance.get("distractor_share_top50")
    figures["chance"] = chance
    translated = _read_all(lake, "translations", dataset, keys)
    if translated is not None and not translated.is_empty() and len(keys) > 1:
        with_control = control != "none"
        log("translations: scoring the stored ones" + (", then plain regeneration (no injection) of the same images, their control ..." if with_control else ""))
        tf, tc = translation_evaluation(project, dataset, translated, typ_all, images, boxes, ckpt, with_control)
        chance.update(tf.pop("chance"))
        figures.update(tf)
        if tc is not None:
            figures["translation_control"] = {"kind": "plain regeneration", **{k: v for k, v in tc.items() if k != "chance"}}
    ctrl_path = None
    if control != "none":
        ctrl, ctrl_path = control_checkpoint(project, dataset, control, ckpt, images, log)
        log(f"scoring the {control} control like the model ...")
        c = score_model(ctrl, images, boxes, spec.typicality, spec.patches)
        figures["control"] = {"kind": control, **c}
        for key in ("pixel_auc_pr", "localisation_ap", "accuracy_val"):
            if key in figures and c.get(key):
                figures[f"{key}_over_{control}"] = round(figures[key] / c[key], 3)
    if curve:
        figures["localisation_curve"] = localisation_along_training(project, dataset, ckpt, boxes, images, ctrl_path, control, chance, curve_images, log)
    preset = getattr(spec.options, "preset", None) if spec.kind == "builtin" else None
    goals = {k: _met(figures[k], op, bound) for k, (op, bound) in GOALS.get(preset, {}).items() if k in figures}
    # the ratio goal is against a model that saw the images but could not learn the labels
    if preset and figures.get("pixel_auc_pr_over_shuffled") is not None:
        goals[f"pixel_auc_pr_{CONTROL_RATIO_GOAL:g}x_shuffled"] = figures["pixel_auc_pr_over_shuffled"] >= CONTROL_RATIO_GOAL
    tc = figures.get("translation_control") or {}
    if preset and figures.get("layout_ssim") is not None and tc.get("layout_ssim") is not None:
        goals["layout_ssim_above_regeneration"] = figures["layout_ssim"] > tc["layout_ssim"]
    figures["goals_met"] = goals
    return figures


MIN_CURVE_POINTS = 5


def localisation_along_training(project, dataset: str, ckpt: dict, boxes, images: pl.DataFrame, control_path, control: str, chance: dict,
                                per_label: int, log=print) -> dict:
    """The localisation figure at every snapshot of the checkpoint's training
    (and of the shuffled control's), on the same boxed images: a table and a
    chart kept under the dataset's files."""
    from .mining.checkpoints import snapshots_of
    from .mining.localisation import boxed_images, curve_picture, localisation_curve

    if boxes is None or boxes.is_empty():
        raise ValueError(f"dataset {dataset!r} has no ground-truth boxes: a localisation curve needs some (declare a boxes: file)")
    spec = project.dataset(dataset)
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
    path = Lake(project.lake).files_dir(dataset, "evaluation", ckpt["checkpoint_id"], "localisation_curve.png")
    curve_picture(curves, chance.get("localisation_ap", float("nan")), path, f"{dataset}: localisation AP along training")
    return {**curves, "chance": chance.get("localisation_ap"), "images": len(rows), "picture": str(path)}


def translation_evaluation(project, dataset: str, translated: pl.DataFrame, typicality: pl.DataFrame, images: pl.DataFrame, boxes, ckpt: dict,
                           with_control: bool = True) -> tuple[dict, dict | None]:
    """Figures of the stored translations, and of their control: the same
    images inverted and regenerated under the same targets without injection."""
    from PIL import Image

    from .mining.checkpoints import checkpoint_of_rows
    from .mining.translation_figures import translation_figures
    from .mining.translation_tables import translate_label

    spec = project.dataset(dataset)
    lake = Lake(project.lake)

    def pixels(path):
        return np.asarray(Image.open(path).convert("RGB"))

    def figures_of(rows: pl.DataFrame, maps: np.ndarray) -> dict:
        sources = {r["image_id"]: pixels(r["source_model_path"]) for r in rows.unique("image_id").iter_rows(named=True)}
        return translation_figures(rows, maps, sources, [pixels(p) for p in rows["path"]], boxes)

    # each label's map file read once; rows keep their own order, maps follow them
    stored = {path: load_array(path).astype(np.float32) for path in translated["map_path"].unique(maintain_order=True)}
    maps = np.stack([stored[p][i] for p, i in zip(translated["map_path"], translated["map_index"])])
    model_figures = figures_of(translated, maps)
    if not with_control:
        return model_figures, None
    model = checkpoint_of_rows(translated, ckpt, lake.files_dir(dataset, "checkpoints"))
    tables, cmaps = [], []
    for key in sorted(translated["label_key"].unique().to_list()):
        typ = typicality.filter(pl.col("label_key") == key)
        out_dir = lake.files_dir(dataset, "controls", "regenerate", translated["checkpoint_id"][0], key)
        t, m = translate_label(model, typ, images, key, spec.translation, spec.typicality, out_dir, translated["checkpoint_id"][0], method="regenerate")
        tables.append(t)
        cmaps.append(m)
    return model_figures, figures_of(pl.concat(tables), np.concatenate(cmaps))


def evaluation_table(figures: dict, spec) -> pl.DataFrame:
    """The figures as rows (label, metric, value, chance, control): every
    number of `evaluate`, per-label figures under their label, the others
    under "all"."""
    import json
    import time

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
    params = json.dumps({name: getattr(spec, name).model_dump(mode="json") for name in ("training", "typicality", "patches", "features", "clusters")}, sort_keys=True)
    return pl.DataFrame(
        {
            "dataset": [figures["dataset"]] * len(rows),
            "label": [r[0] for r in rows],
            "metric": [r[1] for r in rows],
            "value": [r[2] for r in rows],
            "chance": [None if r[3] is None else float(r[3]) for r in rows],
            "control": [None if r[4] is None or isinstance(r[4], bool) else float(r[4]) for r in rows],
            "control_kind": [r[5] if r[4] is not None else None for r in rows],
            "checkpoint_id": [figures["checkpoint_id"]] * len(rows),
            "params": [params] * len(rows),
            "evaluated_at": [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())] * len(rows),
        },
        schema={"dataset": pl.String, "label": pl.String, "metric": pl.String, "value": pl.Float64, "chance": pl.Float64, "control": pl.Float64,
                "control_kind": pl.String, "checkpoint_id": pl.String, "params": pl.String, "evaluated_at": pl.String},
    )


def _seed_pairs(spec, n: int) -> list[tuple[int | None, int]]:
    """(data seed, model seed) of each of `n` runs. A built-in dataset is
    generated anew from seeds its defaults were not tuned on (the shipped
    seed + 1, + 2, ...); other datasets keep their images and vary the model."""
    base_model = spec.training.seed
    if spec.kind == "builtin":
        base_data = spec.options.seed
        return [(base_data + i, base_model + i) for i in range(1, n + 1)]
    return [(None, base_model + i) for i in range(1, n + 1)]


def evaluate_seeds(project, dataset: str, seeds: int, control: str = "shuffled", log=print) -> dict:
    """`diffmine eval --seeds N`: the whole graph materialized again for each
    (data seed, model seed) in a project of its own under the dataset's
    files (kept: a second call only evaluates), each scored like `evaluate`
    with its control, then the mean and spread of every figure."""
    import yaml
    from dagster import DagsterInstance

    from .mining.datasets.spec import load_config
    from .runner import run_dataset

    spec = project.dataset(dataset)
    runs = []
    for data_seed, model_seed in _seed_pairs(spec, seeds):
        overrides = {"training.seed": model_seed, **({"options.seed": data_seed} if data_seed is not None else {})}
        seeded = with_overrides(spec, overrides)
        home = Lake(project.lake).files_dir(dataset, "seeds", f"data{data_seed if data_seed is not None else '-'}-model{model_seed}")
        home.mkdir(parents=True, exist_ok=True)
        raw = seeded.model_dump(mode="json", exclude_unset=False)
        (home / "diffmine.yaml").write_text(yaml.safe_dump({"lake": "lake", "catalog": "catalog.duckdb", "datasets": [raw]}, sort_keys=False))
        log(f"seed run: data seed {data_seed}, model seed {model_seed} in {home}")
        instance = DagsterInstance.ephemeral()
        try:
            done = run_dataset(instance, home / "diffmine.yaml", dataset, log=lambda line: log("  " + line))
        finally:
            instance.dispose()
        if done["failed_runs"]:
            raise RuntimeError(f"seed run {home}: {done['failed_runs']} runs failed")
        figures = evaluate(load_config(home / "diffmine.yaml"), dataset, control=control, log=lambda line: log("  " + line))
        runs.append({"data_seed": data_seed, "model_seed": model_seed, **figures})
    preset = getattr(spec.options, "preset", None) if spec.kind == "builtin" else None
    return {"dataset": dataset, "seeds": [(r["data_seed"], r["model_seed"]) for r in runs], **_spread(runs, control, preset), "runs": runs}


def _spread(runs: list[dict], control: str, preset: str | None = None) -> dict:
    """Mean and sample standard deviation over the runs of each figure, its
    chance level and its controls; the goals of the dataset's preset judged
    on the means."""
    def stats(values):
        vals = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]
        if not vals:
            return None
        return {"mean": round(float(np.mean(vals)), 4), "sd": round(float(np.std(vals, ddof=1)), 4) if len(vals) > 1 else None, "n": len(vals)}

    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("data_seed", "model_seed", "labels", "images")]
    out = {"mean": {k: stats([r.get(k) for r in runs]) for k in keys}}
    out["chance"] = {k: stats([r["chance"].get(k) for r in runs]) for k in runs[0].get("chance", {})}
    if control != "none":
        ckeys = [k for k, v in runs[0]["control"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        out["control"] = {"kind": control, **{k: stats([r["control"].get(k) for r in runs]) for k in ckeys}}
        if all("translation_control" in r for r in runs):
            tkeys = [k for k, v in runs[0]["translation_control"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            out["translation_control"] = {"kind": "plain regeneration", **{k: stats([r["translation_control"].get(k) for r in runs]) for k in tkeys}}
    goals = {}
    for name in runs[0].get("goals_met", {}):
        goals[name] = sum(bool(r["goals_met"][name]) for r in runs)
    out["goals_met_in_runs"] = {k: f"{v}/{len(runs)}" for k, v in goals.items()}
    means = {k: v["mean"] for k, v in out["mean"].items() if v}
    spec_goals = {}
    # the dataset's own preset only: another preset's bound for the same figure must not overwrite it
    for k, (op, bound) in GOALS.get(preset, {}).items():
        if k in means and k in runs[0].get("goals_met", {}):
            spec_goals[k] = _met(means[k], op, bound)
    if preset and "pixel_auc_pr_over_shuffled" in means:
        spec_goals[f"pixel_auc_pr_{CONTROL_RATIO_GOAL:g}x_shuffled"] = means["pixel_auc_pr_over_shuffled"] >= CONTROL_RATIO_GOAL
    regen = (out.get("translation_control") or {}).get("layout_ssim")
    if preset and "layout_ssim" in means and regen:
        spec_goals["layout_ssim_above_regeneration"] = means["layout_ssim"] > regen["mean"]
    out["goals_met_on_means"] = spec_goals
    return out


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
    share = float((images["split"] == "val").mean())
    figures = run_benchmark(model, x0, key, spec.typicality, image_size=size, window=spec.patches.window_px, stride=spec.patches.stride_px,
                            held_out_share=share, log=log)
    return {"dataset": dataset, "label_key": key, "checkpoint_id": ckpt["checkpoint_id"], **figures}


def with_overrides(spec, overrides: dict[str, object]):
    """The dataset spec with "section.field" values replaced, validated as if
    they had been written in diffmine.yaml."""
    updates: dict[str, dict] = {}
    for dotted, value in overrides.items():
        section, _, field = dotted.partition(".")
        if not field or not hasattr(spec, section) or not hasattr(getattr(spec, section), "model_dump"):
            raise ValueError(f"--set {dotted}: expected SECTION.FIELD with SECTION one of options, training, typicality, patches, features, clusters")
        updates.setdefault(section, getattr(spec, section).model_dump(exclude_unset=section == "options"))[field] = value
    raw = {**spec.model_dump(exclude_unset=True), **updates}
    raw.pop("path", None)
    if hasattr(spec, "path"):
        raw["path"] = spec.path
    from .mining.datasets.spec import parse_config

    return parse_config({"datasets": [raw]}, f"--set on dataset {spec.name!r}").datasets[0]


def bench_training(project, dataset: str, overrides: dict, seeds: list[int], data_seed: int | None, control: str | None, log=print) -> dict:
    """`diffmine bench training`: train with the dataset's options (and
    overrides) on each seed, score the held-out images, and summarise."""
    from .mining.quality import prepare, quality_run, summarise

    lake = Lake(project.lake)
    spec = project.dataset(dataset)
    if data_seed is not None:
        overrides = {**overrides, "options.seed": data_seed}
    spec = with_overrides(spec, overrides) if overrides else spec
    work = lake.files_dir(dataset, "bench")
    images, boxes = prepare(spec, work / f"data-{getattr(spec.options, 'seed', 0)}")
    runs = []
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

            run = quality_run(run_spec, images, boxes, target, control=kind, progress=progress)
            runs.append({"seed": seed, "kind": name, **run.figures, "chance": run.chance})
            log(f"  {name}: " + ", ".join(f"{k} {run.figures[k]}" for k in ("accuracy_val", "top1_hit_rate", "pixel_auc_pr", "label_gain_in_range", "train_seconds") if k in run.figures))
    model_runs = [r for r in runs if r["kind"] == "model"]
    out = {"dataset": dataset, "seeds": seeds, "data_seed": getattr(spec.options, "seed", None), "overrides": overrides,
           "model": summarise(model_runs), "chance": model_runs[0]["chance"] if model_runs else {}, "runs": runs,
           "training": spec.training.model_dump(mode="json"), "typicality": spec.typicality.model_dump(mode="json")}
    if control:
        out["control"] = {"kind": control, **summarise([r for r in runs if r["kind"] == control])}
    return out


def bench_scaling(project, dataset: str, sizes: list[int], overrides: dict, log=print) -> dict:
    """`diffmine bench scaling`: both methods timed at each size; the
    figures and a log-log chart of the times are kept under the dataset's
    files (the report shows the chart)."""
    import json

    from .mining.pictures import line_chart
    from .mining.scaling import scaling_run

    spec = project.dataset(dataset)
    spec = with_overrides(spec, overrides) if overrides else spec
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
    }, "log10 seconds against log10 images")
    work.mkdir(parents=True, exist_ok=True)
    chart.save(work / "scaling.png")
    (work / "scaling.json").write_text(json.dumps(figures, indent=2, default=str))
    return figures
