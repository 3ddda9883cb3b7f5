"""The paper's formats through the whole graph: a ChestX-ray14-format
collection (multi-label images, its own box file) and a folder dataset with
a boxes: file, materialized, scored by `diffmine eval` (the localisation
protocol along training included) and shown in the report."""

import json

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance

from diffmine_assets.cli import main as cli_main
from diffmine_assets.runner import run_dataset
from diffmine_assets.storage.catalog import Catalog
from diffmine_assets.storage.lake import Lake
from diffmine_assets_tests.collection_fixtures import write_chestxray14
from diffmine_assets_tests.conftest import FAST, write_config, write_image


def query(root, sql):
    with Catalog(root / "catalog.duckdb", Lake(root / "lake")).reader() as con:
        return con.execute(sql).fetchall()


@pytest.mark.slow
def test_chestxray14_and_a_folder_with_boxes_materialize_and_evaluate(tmp_path, monkeypatch, capsys):
    write_chestxray14(tmp_path / "cx", per_finding=3)
    for i in range(4):
        write_image(tmp_path / "photos" / "cats" / f"c{i}.png", size=(32, 32), seed=i)
        write_image(tmp_path / "photos" / "dogs" / f"d{i}.png", size=(32, 32), seed=10 + i)
    pl.DataFrame({"file": ["cats/c0.png", "cats/c1.png", "dogs/d0.png", "dogs/missing.png"], "label": ["cats", "cats", "dogs", "dogs"],
                  "x": [2, 4, 8, 0], "y": [2, 4, 8, 0], "w": [12, 12, 12, 4], "h": [12, 12, 12, 4]}).write_csv(tmp_path / "boxes.csv")
    small = {**FAST, "patches": {**FAST["patches"], "window_px": 8}}
    cfg = write_config(tmp_path, [
        {"name": "chest", "kind": "chestxray14", "path": str(tmp_path / "cx"), "options": {"resolution": 16}, **small},
        {"name": "photos", "kind": "folder", "path": str(tmp_path / "photos"), "boxes": str(tmp_path / "boxes.csv"), "options": {"resolution": 16}, **small},
    ])
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    instance = DagsterInstance.get()
    for ds in ("chest", "photos"):
        assert run_dataset(instance, cfg, ds, log=lambda _: None)["failed_runs"] == 0
    # an image with two findings is in both partitions, under one id each
    assert query(tmp_path, "select count(*), count(distinct sha256), count(distinct image_id) from images where dataset = 'chest'") == [(12, 9, 12)]
    assert query(tmp_path, "select count(*) from ground_truth_boxes where dataset = 'chest'") == [(12 - 1 + 1,)]
    meta = instance.get_latest_materialization_event(AssetKey(["photos", "ground_truth_boxes"])).asset_materialization.metadata
    assert meta["box_problems_by_reason"].value == {"unknown file": 1} and meta["boxes"].value == 3

    assert cli_main(["--config", str(cfg), "eval", "--dataset", "chest", "--curve", "--no-baseline"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(out[-1])
    # the report rendered by the run above is rendered again, with the figures just stored
    assert any(line.startswith("report:") and "rendered again" in line for line in out)
    page = (tmp_path / "lake" / "files" / "chest" / "report" / "index.html").read_text()
    assert "Localisation: typicality maps against the boxes" in page and "Along training" in page and 'alt="localisation along training"' in page
    assert 0 < figures["localisation_ap"] <= 1 and set(figures["localisation_ap_by_label"]) == set(r[0] for r in query(tmp_path, "select distinct label_key from images where dataset = 'chest'"))
    assert 0 < figures["chance"]["localisation_ap"] < 1 and 0 < figures["control"]["localisation_ap"] <= 1
    assert figures["control"]["kind"] == "shuffled" and "localisation_ap_over_shuffled" in figures
    curve = figures["localisation_curve"]
    assert [r["step"] for r in curve["model"]] == [0, 6, 12, 18, 24, 30] and len(curve["shuffled"]) == 6
    # the last step is the published weights: the stored maps (kept in float16) give the same figure
    assert curve["model"][-1]["localisation_ap"] == pytest.approx(figures["localisation_ap"], abs=0.005)
    per_label = query(tmp_path, "select count(*) from evaluation where dataset = 'chest' and metric = 'localisation_ap' and label != 'all'")
    assert per_label == [(3,)]

    assert cli_main(["--config", str(cfg), "eval", "--dataset", "photos", "--control", "none"]) == 0
    photos = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert photos["pixel_images"] == 3 and 0 <= photos["top1_hit_rate"] <= 1 and 0 <= photos["top1_hit_rate_correspondence"] <= 1

    instance.dispose()
