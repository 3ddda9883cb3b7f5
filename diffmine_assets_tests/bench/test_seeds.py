"""The summary of `diffmine eval --seeds`: goals judged on the means with the
dataset's own preset, controls beside each figure."""

from diffmine_assets.bench.seeds import spread as _spread
from diffmine_assets_tests.conftest import FAST, SMALL_BUILTIN, write_config


def _run(acc, top1, ssim, regen_ssim):
    return {"data_seed": 1, "model_seed": 1, "accuracy_val": acc, "top1_hit_rate": top1, "layout_ssim": ssim,
            "chance": {"accuracy_val": 0.25, "top1_hit_rate": 0.1},
            "control": {"kind": "shuffled", "accuracy_val": 0.3, "top1_hit_rate": 0.35},
            "translation_control": {"kind": "plain regeneration", "layout_ssim": regen_ssim},
            "gaps": {"layout_ssim_minus_regeneration": {"difference": ssim - regen_ssim, "low": ssim - regen_ssim - 0.01, "high": ssim - regen_ssim + 0.01}},
            "goals_met": {"accuracy_val": acc >= 0.95, "top1_hit_rate": top1 >= 0.9}}


def test_goals_on_means_use_the_datasets_preset_only():
    runs = [_run(0.93, 0.88, 0.25, 0.2), _run(0.94, 0.87, 0.27, 0.22)]
    planted = _spread(runs, "shuffled", "planted")
    # photo-shapes sets accuracy >= 0.9 and top-1 >= 0.85: they must not judge the planted dataset
    assert planted["goals_met_on_means"]["accuracy_val"] is False
    assert planted["goals_met_on_means"]["top1_hit_rate"] is False
    # the translation gap is judged on its interval over the seeds (0.05 both times: sd 0, interval [0.05, 0.05])
    assert planted["goals_met_on_means"]["layout_ssim_minus_regeneration"] is True
    shapes = _spread(runs, "shuffled", "photo-shapes")
    assert shapes["goals_met_on_means"]["accuracy_val"] is True and shapes["goals_met_on_means"]["top1_hit_rate"] is True
    assert planted["translation_control"]["layout_ssim"]["mean"] == 0.21
    assert planted["control"]["accuracy_val"]["mean"] == 0.3
    assert _spread(runs, "shuffled", None)["goals_met_on_means"] == {"layout_ssim_minus_regeneration": True}


def test_a_seed_study_runs_the_graph_and_its_evaluation_asset_on_new_seeds(tmp_path, monkeypatch):
    """`diffmine eval --seeds 1` on a small built-in dataset: the graph again
    on data and model seeds the defaults were not tuned on, in a project of
    its own, evaluated by the graph's own evaluation asset."""
    import polars as pl
    import yaml

    from diffmine_assets.bench.seeds import evaluate_seeds
    from diffmine_assets.mining.config import load_config

    small = {**SMALL_BUILTIN, "options": {**SMALL_BUILTIN["options"], "images_per_label": 6, "val_fraction": 0.3},
             "translation": {**FAST["translation"], "images": 1, "steps": 4}}
    project = write_config(tmp_path, [small])
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    lines = []
    # the untrained control: nothing to train, and it shows the control reaches the graph's own evaluation
    study = evaluate_seeds(load_config(project), "builtin", 1, control="untrained", log=lines.append)
    assert study["seeds"] == [(4, 1)]  # the shipped data seed 3 and model seed 0, each + 1
    (run,) = study["runs"]
    home = project.parent / "lake" / "files" / "builtin" / "seeds" / "data4-model1"
    seeded = yaml.safe_load((home / "diffmine.yaml").read_text())["datasets"][0]
    assert seeded["options"]["seed"] == 4 and seeded["training"]["seed"] == 1
    # its figures are the evaluation asset's, stored in the seed project's own lake
    stored = pl.read_parquet(home / "lake" / "evaluation" / "**" / "*.parquet")  # kept per checkpoint
    assert stored["checkpoint_id"].unique().to_list() == [run["checkpoint_id"]]
    assert stored.filter((stored["label"] == "all") & (stored["metric"] == "accuracy_val"))["value"][0] == run["accuracy_val"]
    assert 0 <= run["accuracy_val"] <= 1 and study["mean"]["accuracy_val"] == {"mean": round(run["accuracy_val"], 4), "sd": None, "n": 1}
    assert study["chance"]["accuracy_val"]["mean"] == 0.25 and run["control"]["kind"] == "untrained" == study["control"]["kind"]
    assert set(study["goals_met_on_means"]) <= set(run["goals_met"]) and study["goals_met_on_means"]
    assert any("seed run: data seed 4, model seed 1" in line for line in lines)
    # evaluated once, by the graph's own report run (with the control asked for), not again after it
    assert sum("builtin (report)" in line for line in lines) == 1, [line for line in lines if "(report)" in line]
