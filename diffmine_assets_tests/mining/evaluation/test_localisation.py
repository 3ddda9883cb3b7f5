"""The localisation protocol (METHOD.md section 6) on a ChestX-ray14-format
fixture whose findings are drawn inside their listed boxes: the trained
model's maps find the boxes better than its shuffled-label control's and
than chance, and the figure rises along the snapshots training kept."""

import pytest

from diffmine_assets.mining.training.checkpoints import fit, snapshots_of
from diffmine_assets.mining.evaluation.controls import shuffled_labels
from diffmine_assets.mining.datasets.ingest import ground_truth, ingest
from diffmine_assets.mining.config import parse_config
from diffmine_assets.mining.evaluation.localisation import boxed_images, localisation_by_label, localisation_chance, localisation_curve, maps_of

from diffmine_assets_tests.collection_fixtures import write_chestxray14


@pytest.mark.slow
def test_trained_maps_localise_findings_above_the_control_and_rise_along_training(tmp_path):
    write_chestxray14(tmp_path / "cx", per_finding=12)
    spec = parse_config({"datasets": [{
        "name": "cx", "kind": "chestxray14", "path": str(tmp_path / "cx"), "options": {"resolution": 32},
        "training": {"steps": 200, "batch_size": 16, "learning_rate": 0.002, "save_every": 1000, "log_every": 1000, "snapshots": 2},
        "typicality": {"n_samples": 16, "groups": 4, "batch_size": 64}}]}).datasets[0]
    images = ingest("cx", spec, tmp_path / "_f").images
    boxes = ground_truth("cx", spec, images).boxes
    scored = boxed_images(images, boxes, per_label=100)
    assert len(scored) == len(images) - 1  # every membership has a box but the first image's
    figures = {}
    for name, rows in (("model", images), ("shuffled", shuffled_labels(images, spec.training.seed))):
        fitted = fit("cx", rows, spec.training, 32, f"v-{name}", tmp_path / name)
        figures[name] = localisation_by_label(maps_of(fitted.model, scored, spec.typicality), scored, boxes)
        if name == "model":
            snaps = snapshots_of(fitted.path)
    chance = localisation_chance(scored, boxes)
    model, control = figures["model"]["localisation_ap"], figures["shuffled"]["localisation_ap"]
    assert set(figures["model"]["localisation_ap_by_label"]) == set(images["label_key"])
    assert 0.08 < chance < 0.12  # 20 px boxes on 64 px images
    assert model > 1.5 * control and model > 3 * chance, (model, control, chance)
    # the untrained start and 2 evenly spaced steps; the last is the published weights
    assert [s for s, _ in snaps] == [0, 100, 200]
    curve = localisation_curve(snaps, scored, boxes, spec.typicality, log=lambda _: None)
    assert curve[-1]["localisation_ap"] == model
    assert curve[0]["localisation_ap"] < 1.5 * chance < curve[-1]["localisation_ap"]
