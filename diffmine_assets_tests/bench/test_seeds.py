"""The summary of `diffmine eval --seeds`: goals judged on the means with the
dataset's own preset, controls beside each figure."""

from diffmine_assets.bench.seeds import spread as _spread


def _run(acc, top1, ssim, regen_ssim):
    return {"data_seed": 1, "model_seed": 1, "accuracy_val": acc, "top1_hit_rate": top1, "layout_ssim": ssim,
            "chance": {"accuracy_val": 0.25, "top1_hit_rate": 0.1},
            "control": {"kind": "shuffled", "accuracy_val": 0.3, "top1_hit_rate": 0.35},
            "translation_control": {"kind": "plain regeneration", "layout_ssim": regen_ssim},
            "goals_met": {"accuracy_val": acc >= 0.95, "top1_hit_rate": top1 >= 0.9, "layout_ssim": ssim >= 0.7}}


def test_goals_on_means_use_the_datasets_preset_only():
    runs = [_run(0.93, 0.88, 0.25, 0.2), _run(0.94, 0.87, 0.27, 0.22)]
    planted = _spread(runs, "shuffled", "planted")
    # photo-shapes sets accuracy >= 0.9 and top-1 >= 0.85: they must not judge the planted dataset
    assert planted["goals_met_on_means"]["accuracy_val"] is False
    assert planted["goals_met_on_means"]["top1_hit_rate"] is False
    assert planted["goals_met_on_means"]["layout_ssim_above_regeneration"] is True
    shapes = _spread(runs, "shuffled", "photo-shapes")
    assert shapes["goals_met_on_means"]["accuracy_val"] is True and shapes["goals_met_on_means"]["top1_hit_rate"] is True
    assert planted["translation_control"]["layout_ssim"]["mean"] == 0.21
    assert planted["control"]["accuracy_val"]["mean"] == 0.3
    assert _spread(runs, "shuffled", None)["goals_met_on_means"] == {}
