"""`diffmine bench training --curve`: quality against training time, each
point trained to its own time, the control trained the same way."""

from PIL import Image

from diffmine_assets.bench.training import bench_curve
from diffmine_assets.mining.config import load_config
from diffmine_assets_tests.conftest import SMALL_BUILTIN, write_config


def test_each_point_trains_to_its_own_time_beside_its_control_and_chance(tmp_path):
    # the recipe's fixed length (30 steps) must give way to the curve's time
    project = load_config(write_config(tmp_path, [SMALL_BUILTIN]))
    lines = []
    curve = bench_curve(project, "builtin", {"training.log_every": 1000}, [0], None, [0.2, 0.05], "shuffled", log=lines.append)
    assert curve["minutes"] == [0.05, 0.2]
    short, long = curve["points"]
    # more time, more steps (the steps are fixed from timed steps, so not an exact ratio)
    assert long["model"]["steps"]["mean"] > 1.5 * short["model"]["steps"]["mean"]
    assert short["model"]["steps"]["mean"] != 30 and long["model"]["steps"]["mean"] != 30
    for point in curve["points"]:
        model, control = [r for r in point["runs"] if r["kind"] == "model"], [r for r in point["runs"] if r["kind"] == "shuffled"]
        assert len(model) == len(control) == 1
        # the control follows the model's schedule to the same published step
        assert control[0]["steps"] == model[0]["steps"]
        assert "time ceiling" in model[0]["stopped_by"] or "budget" in model[0]["stopped_by"]
        assert point["chance"]["accuracy_val"] == 0.25
        assert 0 <= point["model"]["accuracy_val"]["mean"] <= 1 and 0 <= point["control"]["pixel_auc_pr"]["mean"] <= 1
    with Image.open(curve["chart"]) as chart:
        assert chart.width > 600  # three panels: accuracy, top-1, pixel AP
    assert any(line.startswith("curve: 0.2 | ") for line in lines)
