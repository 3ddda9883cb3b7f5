"""A smoke run of the photo-shapes preset through the whole graph (the full
run is `diffmine materialize --dataset photo-shapes`, see docs/QUALITY.md)."""

import json

import pytest
from dagster import DagsterInstance

from diffmine_assets.mining.datasets.photo_shapes import SHAPES
from diffmine_assets.runner import run_dataset
from diffmine_assets.storage.catalog import Catalog
from diffmine_assets.storage.lake import Lake
from diffmine_assets_tests.conftest import FAST, write_config


@pytest.mark.slow
def test_photo_shapes_runs_end_to_end_with_boxes_and_a_label_matrix(tmp_path, monkeypatch):
    ds = {"name": "photo-shapes", "kind": "builtin", "options": {"preset": "photo-shapes", "images_per_label": 4, "resolution": 16},
          **FAST, "training": {**FAST["training"], "patch": 2, "channels": [32, 32, 32]}, "patches": {**FAST["patches"], "window_px": 12},
          "typicality": {**FAST["typicality"], "label_matrix": "held-out"}}
    cfg = write_config(tmp_path, [ds])
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    instance = DagsterInstance.get()
    lines = []
    figures = run_dataset(instance, cfg, "photo-shapes", log=lines.append)
    instance.dispose()
    assert figures["failed_runs"] == 0 and sorted(figures["labels"]) == sorted(SHAPES)
    assert any(line.startswith("estimate: ") for line in lines) and figures["estimated_seconds"] > 0
    with Catalog(tmp_path / "catalog.duckdb", Lake(tmp_path / "lake")).reader() as con:
        assert con.execute("select count(*), count(distinct label) from images").fetchone() == (40, 10)
        assert con.execute("select count(*) from ground_truth_boxes where role = 'label' and kind = label").fetchone() == (40,)
        assert con.execute("select count(distinct label_key) from image_typicality").fetchone() == (10,)
        # the default label matrix: the held-out images only, under every label
        held_out = con.execute("select count(*) from images where split = 'val'").fetchone()[0]
        assert held_out > 0 and con.execute("select count(*), count(distinct image_id) from label_matrix").fetchone() == (held_out * 10, held_out)
        ckpt = con.execute("select label_gain, planned_steps from checkpoint").fetchone()
    bands = json.loads(ckpt[0])
    assert len(bands) == 10 and bands[0]["t_lo"] == 0 and bands[-1]["t_hi"] == 1000 and ckpt[1] == 30
