"""`diffmine bench training --curve`: quality against training time, each
point trained to its own time, the control trained the same way."""

import pytest
from PIL import Image

from diffmine_assets.bench.training import bench_curve
from diffmine_assets.mining.config import load_config
from diffmine_assets_tests.conftest import SMALL_BUILTIN, write_config


@pytest.mark.slow
def test_each_point_trains_to_its_own_time_beside_its_control_and_chance(tmp_path):
    # the recipe's fixed length (30 steps) must give way to the curve's time
    project = load_config(write_config(tmp_path, [SMALL_BUILTIN]))
    lines = []
    curve = bench_curve(project, "builtin", {"training.log_every": 1000}, [0], None, [0.2, 0.05, 0.2], "shuffled", log=lines.append)
    assert curve["minutes"] == [0.05, 0.2] and curve["training"]["steps"] is None and curve["training"]["epochs"] is None
    short, long = curve["points"]
    # the length came from the time alone (a fixed length cut by a budget says "a time budget of ... cut")
    assert [r["stopped_by"].split(",")[0] for r in short["runs"]][0] == "the time ceiling (3 s"
    assert [r["stopped_by"].split(",")[0] for r in long["runs"]][0] == "the time ceiling (12 s"
    assert long["model"]["steps"]["mean"] > short["model"]["steps"]["mean"]
    for point in curve["points"]:
        model, control = [r for r in point["runs"] if r["kind"] == "model"], [r for r in point["runs"] if r["kind"] == "shuffled"]
        assert len(model) == len(control) == 1
        # the control follows the model's schedule to the same published step
        assert control[0]["steps"] == model[0]["steps"]
        # each kind beside its own chance: accuracy's is 1 / labels for both
        assert point["chance"]["model"]["accuracy_val"]["mean"] == point["chance"]["shuffled"]["accuracy_val"]["mean"] == 0.25
        assert 0 <= point["model"]["accuracy_val"]["mean"] <= 1 and 0 <= point["control"]["pixel_auc_pr"]["mean"] <= 1
    with Image.open(curve["chart"]) as chart:
        assert chart.width > 600  # three panels: accuracy, top-1, pixel AP
    assert any(line.startswith("curve: 0.2 | ") for line in lines)
    # a length of the user's own would not be the curve's: refused, not overwritten
    with pytest.raises(ValueError, match="training.steps"):
        bench_curve(project, "builtin", {"training.steps": 10}, [0], None, [0.05], None, log=lines.append)
