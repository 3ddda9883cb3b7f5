"""`diffmine eval --seeds N`: the whole graph again on N (data seed, model
seed) pairs the defaults were not tuned on, each in a project of its own,
each evaluated by the graph's own `evaluation` asset; then the mean and
spread of every figure, its chance level and its controls, and the goals of
the dataset's preset judged on the means; the translations' paired gaps
from their controls with a 95 % interval over the seeds."""

from __future__ import annotations

import yaml
from dagster import DagsterInstance

from ..assets.evaluation import stored_figures
from ..mining.config.project import with_overrides
from ..mining.evaluation.goals import judge, preset_of
from ..mining.evaluation.intervals import mean_interval
from ..runner import run_dataset
from ..storage.lake import Lake
from .common import mean_sd


def seed_pairs(spec, n: int) -> list[tuple[int | None, int]]:
    """(data seed, model seed) of each of `n` runs. A built-in dataset is
    generated anew from seeds its defaults were not tuned on (the shipped
    seed + 1, + 2, ...); other datasets keep their images and vary the model."""
    base_model = spec.training.seed
    if spec.kind == "builtin":
        base_data = spec.options.seed
        return [(base_data + i, base_model + i) for i in range(1, n + 1)]
    return [(None, base_model + i) for i in range(1, n + 1)]


def _seed_project(project, dataset: str, data_seed: int | None, model_seed: int):
    """A project of its own for one seed run, under the dataset's files
    (kept: a second study reuses its checkpoint)."""
    spec = project.dataset(dataset)
    overrides = {"training.seed": model_seed, **({"options.seed": data_seed} if data_seed is not None else {})}
    seeded = with_overrides(spec, overrides)
    home = Lake(project.lake).files_dir(dataset, "seeds", f"data{data_seed if data_seed is not None else '-'}-model{model_seed}")
    home.mkdir(parents=True, exist_ok=True)
    raw = seeded.model_dump(mode="json", exclude_unset=False)
    (home / "diffmine.yaml").write_text(yaml.safe_dump({"lake": "lake", "catalog": "catalog.duckdb", "datasets": [raw]}, sort_keys=False))
    return home / "diffmine.yaml"


def evaluate_seeds(project, dataset: str, seeds: int, control: str = "shuffled", log=print) -> dict:
    """Materialize the dataset again for each seed pair, evaluate each run
    like `diffmine eval` (the evaluation asset, with its control), and
    summarise the runs."""
    spec = project.dataset(dataset)
    runs = []
    for data_seed, model_seed in seed_pairs(spec, seeds):
        config = _seed_project(project, dataset, data_seed, model_seed)
        log(f"seed run: data seed {data_seed}, model seed {model_seed} in {config.parent}")
        if control != "none":
            log(f"  the evaluation scores the {control} control beside the model" + (" (it trains like the model)" if control == "shuffled" else ""))
        # in memory: every asset of the seed's project is materialized again (its checkpoint is reused when it fits)
        instance = DagsterInstance.ephemeral()
        try:
            # the graph's own evaluation runs with the control, once; the report is rendered after it in the same run
            done = run_dataset(instance, config, dataset, evaluation_control=control, log=lambda line: log("  " + line))
            if done["failed_runs"] or "evaluation" not in done["ran"].get(f"{dataset} (report)", []):
                raise RuntimeError(f"seed run {config.parent}: not evaluated, {done['failed_runs']} runs failed (run {done['run_ids'][-1][:8]}; see the log above)")
            figures = stored_figures(instance, dataset)
        finally:
            instance.dispose()
        runs.append({"data_seed": data_seed, "model_seed": model_seed, **figures})
    return {"dataset": dataset, "seeds": [(r["data_seed"], r["model_seed"]) for r in runs], **spread(runs, control, preset_of(spec)),
            "runs": runs}


def _numbers(d: dict, leave_out=()) -> list[str]:
    return [k for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in leave_out]


def spread(runs: list[dict], control: str, preset: str | None = None) -> dict:
    """Mean and sample standard deviation over the runs of each figure, its
    chance level and its controls; the goals of the dataset's preset judged
    on the means."""
    out = {"mean": {k: mean_sd([r.get(k) for r in runs]) for k in _numbers(runs[0], ("data_seed", "model_seed", "labels", "images"))}}
    out["chance"] = {k: mean_sd([r["chance"].get(k) for r in runs]) for k in runs[0].get("chance", {})}
    if control != "none":
        out["control"] = {"kind": control, **{k: mean_sd([r["control"].get(k) for r in runs]) for k in _numbers(runs[0]["control"])}}
        if all("translation_control" in r for r in runs):
            keys = _numbers(runs[0]["translation_control"])
            out["translation_control"] = {"kind": "plain regeneration", **{k: mean_sd([r["translation_control"].get(k) for r in runs]) for k in keys}}
    goals = {name: sum(bool(r["goals_met"][name]) for r in runs) for name in runs[0].get("goals_met", {})}
    out["goals_met_in_runs"] = {k: f"{v}/{len(runs)}" for k, v in goals.items()}
    out["gaps"] = gaps_over_runs(runs)
    means = {k: v["mean"] for k, v in out["mean"].items() if v}
    out["goals_met_on_means"] = judge({**means, "gaps": out["gaps"]}, preset)
    return out


def gaps_over_runs(runs: list[dict]) -> dict:
    """Each translation gap over the runs: the mean difference and its 95 %
    interval, a t-interval over the runs (seeds are the independent units);
    one run keeps its own bootstrap interval over images."""
    names = dict.fromkeys(n for r in runs for n in (r.get("gaps") or {}))
    out = {}
    for name in names:
        values = [r["gaps"][name]["difference"] for r in runs if (r.get("gaps") or {}).get(name)]
        if not values:
            continue
        summary = mean_sd(values)
        if len(values) == 1:
            only = next(r["gaps"][name] for r in runs if (r.get("gaps") or {}).get(name))
            low, high = only["low"], only["high"]
        else:
            low, high = mean_interval(values)
        out[name] = {**summary, "difference": summary["mean"], "low": low, "high": high}
    return out
