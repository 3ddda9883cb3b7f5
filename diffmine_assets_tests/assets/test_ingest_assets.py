"""The dataset assets materialized through a real Dagster instance."""

import json
import subprocess
import sys

import pytest

from dagster import AssetKey, DagsterInstance, MultiPartitionsDefinition
from diffmine_assets.cli import main as cli_main
from diffmine_assets.definitions import build_definitions
from diffmine_assets.runner import SelectionError, run_dataset
from diffmine_assets.storage.catalog import Catalog
from diffmine_assets.storage.lake import Lake
from diffmine_assets_tests.conftest import FAST, REPO, SMALL_BUILTIN, write_config, write_image


def sql(project, query, params=None):
    cfg = build_definitions(project).resources["diffmine"].project
    with Catalog(cfg.catalog, Lake(cfg.lake)).reader() as con:
        return con.execute(query, params or {}).fetchall()


def test_definitions_have_dataset_and_label_dimensions(project):
    defs = build_definitions(project)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"builtin/images", "builtin/ground_truth_boxes", "builtin/label_matrix", "builtin/typicality_history"} <= keys
    pdef = graph.get(AssetKey(["builtin", "images"])).partitions_def
    assert pdef.get_partition_keys() == ["builtin"]
    # the side tables are outputs of the graph, and the report declares everything it reads
    parents = lambda name: {k.to_user_string() for k in graph.get(AssetKey(["builtin", name])).parent_keys}  # noqa: E731
    assert parents("label_matrix") == parents("typicality_history") == {"builtin/images", "builtin/checkpoint"}
    assert parents("report") == {f"builtin/{n}" for n in ("images", "checkpoint", "ground_truth_boxes", "image_typicality", "label_matrix",
                                                          "patch_typicality", "clusters", "cluster_members", "evaluation", "translations",
                                                          "parallel_typicality", "parallel_clusters", "parallel_cluster_members")}
    assert parents("parallel_typicality") == {"builtin/translations", "builtin/image_typicality"}
    assert {"builtin/translations", "builtin/baseline_patches"} <= parents("evaluation")
    label_assets = [graph.get(k) for k in graph.get_all_asset_keys() if isinstance(graph.get(k).partitions_def, MultiPartitionsDefinition)]
    for node in label_assets:
        assert {d.name for d in node.partitions_def.partitions_defs} == {"dataset", "label"}


def test_dagster_definitions_validate_passes():
    out = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Validation successful" in out.stdout + out.stderr


def test_images_registers_labels_and_is_idempotent(project, instance):
    figures = run_dataset(instance, project, "builtin", select=["images", "ground_truth_boxes"], log=lambda *_: None)
    assert figures["failed_runs"] == 0
    assert sorted(instance.get_dynamic_partitions("builtin-labels")) == ["amber", "cobalt", "jade", "violet"]
    rows = sql(project, "select label, count(*) from images group by label order by label")
    assert rows == [("amber", 8), ("cobalt", 8), ("jade", 8), ("violet", 8)]
    boxes_before = sql(project, "select count(*) from ground_truth_boxes")[0][0]
    assert boxes_before > 32
    # Run records and materializations are in the instance the UI reads.
    mat = instance.get_latest_materialization_event(AssetKey(["builtin", "images"]))
    meta = mat.asset_materialization.metadata
    assert meta["images"].value == 32 and meta["skipped"].value == 0
    per_label = meta["per_label"].value  # a table the UI renders as one
    assert [r.data["label"] for r in per_label.records] == ["amber", "cobalt", "jade", "violet"] and per_label.records[0].data["images"] == 8
    assert "data:image/png;base64," in meta["preview"].value
    assert mat.asset_materialization.tags["dagster/data_version"]
    # again: same rows, no duplicates, same data version
    run_dataset(instance, project, "builtin", select=["images", "ground_truth_boxes"], log=lambda *_: None)
    assert sql(project, "select count(*), count(distinct image_id) from images") == [(32, 32)]
    assert sql(project, "select count(*) from ground_truth_boxes")[0][0] == boxes_before
    mat2 = instance.get_latest_materialization_event(AssetKey(["builtin", "images"]))
    assert mat2.asset_materialization.tags["dagster/data_version"] == mat.asset_materialization.tags["dagster/data_version"]


def test_folder_dataset_with_odd_names_and_bad_files(tmp_path, monkeypatch):
    data = tmp_path / "photos"
    labels = ["Zürich, CH", "a/b|c", "x'); drop view images; --"]
    for i, lbl in enumerate(labels):
        for j in range(3):
            write_image(data / lbl.replace("/", "_") / f"img {j}.png", seed=10 * i + j)
    (data / "Zürich, CH" / "broken.jpg").write_bytes(b"nope")
    (data / "empty").mkdir()
    cfg = write_config(tmp_path, [SMALL_BUILTIN, {"name": "photos", "kind": "folder", "path": "photos", "options": {"resolution": 16}, **FAST}])
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    instance = DagsterInstance.get()
    try:
        figures = run_dataset(instance, cfg, "photos", select=["images", "ground_truth_boxes"], log=lambda *_: None)
        assert figures["failed_runs"] == 0
        keys = instance.get_dynamic_partitions("photos-labels")
        assert len(keys) == 3 and all("|" not in k and "," not in k and "/" not in k for k in keys)
        rows = sql(cfg, "select label, count(*) from images where dataset = $d group by label order by label", {"d": "photos"})
        assert rows == sorted([("Zürich, CH", 3), ("a_b|c", 3), ("x'); drop view images; --", 3)])
        meta = instance.get_latest_materialization_event(AssetKey(["photos", "images"])).asset_materialization.metadata
        assert meta["skipped"].value == 1 and meta["empty_labels"].value == ["empty"]
        # no ground truth for a folder: the asset is not materialized for it
        assert not Lake(tmp_path / "lake").partition_file("ground_truth_boxes", "photos").exists()
    finally:
        instance.dispose()


def test_failures_name_the_problem(tmp_path, monkeypatch):
    cfg = write_config(tmp_path, [{"name": "gone", "kind": "folder", "path": "not-here"}])
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    instance = DagsterInstance.get()
    try:
        lines = []
        figures = run_dataset(instance, cfg, "gone", log=lines.append)
        assert figures["failed_runs"] == 1
        assert any("path" in line and "not-here does not exist" in line for line in lines)
        with pytest.raises(Exception, match=r"no dataset named 'nope'"):
            run_dataset(instance, cfg, "nope", log=lambda *_: None)
        with pytest.raises(SelectionError, match="unknown assets"):
            run_dataset(instance, cfg, "gone", select=["imagez"], log=lambda *_: None)
    finally:
        instance.dispose()


def test_cli_materialize_then_sql_json(project, capsys):
    assert cli_main(["materialize", "--dataset", "builtin", "--select", "images"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["failed_runs"] == 0 and figures["runs"] == 1
    assert cli_main(["sql", "select label, count(*) as n from images where label = $l group by label", "--param", "l=jade", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"label": "jade", "n": 8}]
    assert cli_main(["sql", "select label from images limit 1", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "label"
    assert cli_main(["sql", "drop view images"]) == 2
    assert "read-only" in capsys.readouterr().err


def test_every_partition_offered_exists_with_two_datasets(tmp_path, monkeypatch):
    """With two datasets, each label asset offers exactly its own dataset's
    (dataset, label) pairs: the partitions a "backfill all missing" launches.
    Launched, none fails. (One `label` set shared by all datasets offered
    every label of every dataset for every dataset, and those runs failed.)"""
    data = tmp_path / "photos"
    for li, label in enumerate(("cats", "dogs")):
        for i in range(3):
            write_image(data / label / f"{i}.png", size=(32, 32), seed=10 * li + i)
    cfg = write_config(tmp_path, [SMALL_BUILTIN, {"name": "photos", "kind": "folder", "path": "photos", "options": {"resolution": 16, "val_fraction": 0.0}, **FAST}])
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    instance = DagsterInstance.get()
    try:
        for ds in ("builtin", "photos"):
            assert run_dataset(instance, cfg, ds, select=["images", "checkpoint"], log=lambda *_: None)["failed_runs"] == 0
        defs = build_definitions(cfg)
        graph = defs.resolve_asset_graph()
        offered = {}
        for key in graph.get_all_asset_keys():
            pdef = graph.get(key).partitions_def
            if isinstance(pdef, MultiPartitionsDefinition):
                offered[key.to_user_string()] = {str(k) for k in pdef.get_partition_keys(dynamic_partitions_store=instance)}
        # the UI's lineage: one asset group per dataset (none shared), the stages a tag inside it
        groups = {}
        for key in graph.get_all_asset_keys():
            groups.setdefault(graph.get(key).group_name, set()).add(key.path[0])
        assert groups == {"builtin": {"builtin"}, "photos": {"photos"}}
        assert graph.get(AssetKey(["photos", "clusters"])).tags["diffmine/stage"] == "elements"
        assert offered["builtin/image_typicality"] == {f"builtin|{lbl}" for lbl in ("amber", "cobalt", "jade", "violet")}
        assert offered["photos/image_typicality"] == {"photos|cats", "photos|dogs"}
        # the backfill: every offered partition, as the UI's "All" launches it, through the label job's first step
        # (where a pair that does not exist failed: its label is not in its dataset's checkpoint)
        for ds in ("builtin", "photos"):
            job = defs.resolve_job_def(f"{ds}__label_assets")
            first = [AssetKey([ds, "image_typicality"]), AssetKey([ds, "label_matrix"]), AssetKey([ds, "typicality_history"])]
            for partition in sorted(offered[f"{ds}/clusters"]):
                result = job.execute_in_process(instance=instance, partition_key=partition, asset_selection=first, raise_on_error=False)
                assert result.success, partition
    finally:
        instance.dispose()


def test_dataset_names_that_collide_as_identifiers_are_refused(tmp_path):
    cfg = write_config(tmp_path, [{**SMALL_BUILTIN, "name": "my-set"}, {**SMALL_BUILTIN, "name": "my_set"}])
    with pytest.raises(Exception, match="job names"):
        build_definitions(cfg)
