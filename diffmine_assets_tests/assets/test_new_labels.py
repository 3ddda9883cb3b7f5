"""Backfilling a new label: the sensor finds it, the checkpoint continues
training with it (old labels kept), then only the new label is mined; the
old labels' results show stale. A dataset's first run is the user's: the
sensor never starts one, and never asks again for a run the user cancelled."""

from pathlib import Path

import numpy as np
import pytest

from dagster import AssetKey, DagsterInstance, RunRequest, RunsFilter, SkipReason, build_sensor_context
from dagster._core.storage.tags import REPOSITORY_LABEL_TAG, RUN_KEY_TAG
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest
from diffmine_assets.definitions import build_definitions
from diffmine_assets.partitions import multi_key
from diffmine_assets.storage.lake import Lake
from diffmine_assets_tests.conftest import FAST, write_config, write_image


def evaluate(defs, instance):
    sensor = defs.resolve_sensor_def("new_labels")
    return sensor(build_sensor_context(instance=instance, resources={"diffmine": defs.resources["diffmine"]}))


def tick(defs, instance):
    result = evaluate(defs, instance)
    if isinstance(result, SkipReason):
        return []
    return list(result.run_requests)


def first_run(defs, instance, dataset="photos"):
    """The user's act (diffmine materialize, or Materialize in the UI): the sensor asks for nothing before it."""
    result = evaluate(defs, instance)
    assert isinstance(result, SkipReason) and f"{dataset}: never materialized" in result.skip_message, result
    execute(defs, instance, [RunRequest(job_name=f"{dataset}__dataset_assets", partition_key=dataset)])


def execute(defs, instance, requests):
    for r in requests:
        res = defs.resolve_job_def(r.job_name).execute_in_process(instance=instance, partition_key=r.partition_key, tags=r.tags, raise_on_error=False)
        assert res.success, r


@pytest.fixture
def photos(tmp_path, monkeypatch):
    data = tmp_path / "photos"
    for li, label in enumerate(("cats", "dogs")):
        for i in range(4):
            write_image(data / label / f"{i}.png", size=(32, 32), seed=10 * li + i)
    training = {**FAST["training"], "continue_steps": 20}
    cfg = write_config(tmp_path, [{"name": "photos", "kind": "folder", "path": "photos", "options": {"resolution": 16, "val_fraction": 0.0}, **FAST, "training": training}])
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    instance = DagsterInstance.get()
    yield tmp_path, cfg, instance
    instance.dispose()


def test_sensor_ingests_continues_training_and_mines_only_the_new_label(photos):
    root, cfg, instance = photos
    defs = build_definitions(cfg)
    lake = Lake(root / "lake")

    first_run(defs, instance)
    second = tick(defs, instance)
    assert sorted(str(r.partition_key) for r in second) == ["photos|cats", "photos|dogs"]
    execute(defs, instance, second)
    assert tick(defs, instance) == []
    old = lake.read_partition("checkpoint", "photos").row(0, named=True)

    for i in range(3):
        write_image(root / "photos" / "Wild birds" / f"{i}.png", size=(32, 32), seed=100 + i)
    third = tick(defs, instance)
    assert [(r.job_name, r.partition_key) for r in third] == [("photos__dataset_assets", "photos")]
    execute(defs, instance, third)
    new = lake.read_partition("checkpoint", "photos").row(0, named=True)
    assert new["continued_from"] == old["checkpoint_id"]
    assert new["steps"] == old["steps"] + 20
    assert new["labels"][:2] == ["cats", "dogs"] and len(new["labels"]) == 3

    fourth = tick(defs, instance)
    birds = [r for r in fourth]
    assert len(birds) == 1 and str(birds[0].partition_key).startswith("photos|wild-birds-")
    execute(defs, instance, birds)
    assert tick(defs, instance) == []
    mined = lake.read_partition("image_typicality", "photos", birds[0].partition_key.keys_by_dimension["label"])
    assert len(mined) == 3 and mined["checkpoint_id"][0] == new["checkpoint_id"]

    # features of an old label's patches come from the checkpoint that found them, not the current one
    feats_before = lake.read_partition("patch_features", "photos", "dogs")
    features_only = dict(partition_key=multi_key("photos", "dogs"), asset_selection=[AssetKey(["photos", "patch_features"])], raise_on_error=False)
    assert defs.resolve_job_def("photos__label_assets").execute_in_process(instance=instance, **features_only).success
    feats_after = lake.read_partition("patch_features", "photos", "dogs")
    assert feats_after["checkpoint_id"].unique().to_list() == [old["checkpoint_id"]]
    assert np.allclose(np.stack(feats_after["feature"].to_numpy()), np.stack(feats_before["feature"].to_numpy()), atol=1e-5)

    # the documented choice: old labels' results are kept, and show stale
    graph = defs.resolve_asset_graph()
    resolver = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
    assert resolver.get_status(AssetKey(["photos", "image_typicality"]), multi_key("photos", "cats")) == StaleStatus.STALE
    assert resolver.get_status(AssetKey(["photos", "image_typicality"]), birds[0].partition_key) == StaleStatus.FRESH
    assert lake.read_partition("image_typicality", "photos", "cats")["checkpoint_id"][0] == old["checkpoint_id"]

    # re-mining an old label with the new checkpoint keeps both in the history, to compare in SQL
    execute(defs, instance, [type(birds[0])(job_name="photos__label_assets", partition_key=multi_key("photos", "cats"))])
    from diffmine_assets_tests.assets.test_typicality_assets import readme_queries, query
    compare = readme_queries()[-1]
    rows = query(root, compare, {"before": old["checkpoint_id"], "after": new["checkpoint_id"]})
    assert [(r[0], r[1]) for r in rows] == [("cats", 4)]
    assert -1.0 <= rows[0][2] <= 1.0 and rows[0][3] != 0

    # an old checkpoint's weights deleted: its rows' features fail clearly instead of using other weights
    import shutil
    shutil.rmtree(old["path"])
    failed = defs.resolve_job_def("photos__label_assets").execute_in_process(instance=instance, **features_only)
    assert not failed.success
    message = failed.get_step_failure_events()[0].event_specific_data.error.message
    assert old["checkpoint_id"] in message and "re-materialize image_typicality" in message


def test_retrain_option_starts_from_scratch(photos):
    root, cfg, instance = photos
    training = {**FAST["training"], "continue_steps": 20, "on_new_data": "retrain"}
    write_config(root, [{"name": "photos", "kind": "folder", "path": "photos", "options": {"resolution": 16, "val_fraction": 0.0}, **FAST, "training": training}])
    defs = build_definitions(cfg)
    first_run(defs, instance)
    write_image(root / "photos" / "birds" / "0.png", size=(32, 32), seed=7)
    execute(defs, instance, tick(defs, instance))
    row = Lake(root / "lake").read_partition("checkpoint", "photos").row(0, named=True)
    assert row["continued_from"] is None and row["steps"] == 30 and sorted(row["labels"]) == ["birds", "cats", "dogs"]


def test_new_data_after_a_network_change_trains_the_new_network(photos):
    """A continuation loads the previous checkpoint's network as it was: with
    the conditioning changed since, new data must not keep the old one."""
    from diffmine_assets.mining.denoisers.registry import load_denoiser

    root, cfg, instance = photos
    first_run(build_definitions(cfg), instance)
    old = Lake(root / "lake").read_partition("checkpoint", "photos").row(0, named=True)
    training = {**FAST["training"], "continue_steps": 20, "conditioning": "class"}
    write_config(root, [{"name": "photos", "kind": "folder", "path": "photos", "options": {"resolution": 16, "val_fraction": 0.0}, **FAST, "training": training}])
    defs = build_definitions(cfg)
    write_image(root / "photos" / "birds" / "0.png", size=(32, 32), seed=7)
    execute(defs, instance, tick(defs, instance))
    row = Lake(root / "lake").read_partition("checkpoint", "photos").row(0, named=True)
    assert row["checkpoint_id"] != old["checkpoint_id"]
    assert row["continued_from"] is None and row["steps"] == 30 and sorted(row["labels"]) == ["birds", "cats", "dogs"]
    assert load_denoiser(old["path"]).conditioning == "film" and load_denoiser(row["path"]).conditioning == "class"


def test_a_label_ingestion_cannot_use_never_blocks_the_others(photos):
    """A label folder holding only files ingestion drops (a Thumbs.db, a text
    file, a corrupt image) is asked for once; the dataset's other labels are
    mined all the same, and the request comes back only when its files change.
    A run the user cancelled is not asked for again until its files change."""
    root, cfg, instance = photos
    notes = root / "photos" / "notes"
    notes.mkdir()
    (notes / "Thumbs.db").write_bytes(b"\0" * 64)
    (notes / "readme.txt").write_text("not an image")
    (notes / "broken.jpg").write_bytes(b"nope")
    defs = build_definitions(cfg)
    first_run(defs, instance)
    second = tick(defs, instance)
    assert sorted(str(r.partition_key) for r in second) == ["photos|cats", "photos|dogs"]
    write_image(notes / "0.png", size=(32, 32), seed=99)
    third = tick(defs, instance)
    assert [(r.job_name, r.partition_key) for r in third] == [("photos__dataset_assets", "photos")]

    # the user cancels that run: not asked for again, and the tick says why, until the label's files change
    (asked,) = third
    run = instance.create_run_for_job(defs.resolve_job_def(asked.job_name), tags={**asked.tags, RUN_KEY_TAG: asked.run_key, "dagster/partition": asked.partition_key})
    instance.report_run_canceled(run)
    result = evaluate(defs, instance)
    assert isinstance(result, SkipReason) and f"their run {run.run_id[:8]} was cancelled" in result.skip_message, result
    write_image(notes / "1.png", size=(32, 32), seed=98)
    assert [(r.job_name, r.partition_key) for r in tick(defs, instance)] == [("photos__dataset_assets", "photos")]


def test_the_sensor_polls_with_the_filter_of_ingestion(tmp_path):
    from diffmine_assets.mining.config import load_config
    from diffmine_assets.mining.datasets.registry import discover_labels

    data = tmp_path / "photos"
    write_image(data / "cats" / "0.png", size=(32, 32))
    (data / "system").mkdir(parents=True)
    (data / "system" / "Thumbs.db").write_bytes(b"x")
    (data / "system" / "desktop.ini").write_text("x")
    (data / "hidden" / ".cache").mkdir(parents=True)
    (data / "hidden" / ".cache" / "0.png").write_bytes(b"x")
    cfg = write_config(tmp_path, [{"name": "photos", "kind": "folder", "path": "photos"}])
    assert discover_labels(load_config(cfg).dataset("photos")) == ["cats"]


def test_the_command_line_adds_a_label_as_the_sensor_does_within_its_budget(photos, capsys):
    """`diffmine materialize` after a new label: the checkpoint continues and
    only the new label is mined (the old ones are left stale and named, the
    sensor's choice); a budget bounds the run: refused when mining alone
    overruns it, checked between runs, and the report waits for every label."""
    from diffmine_assets.cli import main as cli_main
    from diffmine_assets.runner import run_dataset

    root, cfg, instance = photos
    lake = Lake(root / "lake")
    # a budget the mining alone overruns: refused in one line before any training
    assert cli_main(["--config", str(cfg), "materialize", "--dataset", "photos", "--budget", "1s"]) == 2
    err = capsys.readouterr().err
    assert "too short for this run" in err and "give at least" in err and len(err.strip().splitlines()) == 1, err
    assert not lake.has_partition("checkpoint", "photos")

    lines = []
    assert run_dataset(instance, cfg, "photos", select=["images", "checkpoint"], log=lines.append)["failed_runs"] == 0
    assert not (lake.files_dir("photos", "checkpoints") / "in_progress").exists()  # published: no state left to resume by accident
    # the budget is spent before the labels: none is started, and no report of some labels is made
    spent = run_dataset(instance, cfg, "photos", budget_s=0.001, log=lines.append)
    assert spent["not_mined_over_budget"] == ["cats", "dogs"] and list(spent["ran"]) == ["photos"]  # the files are read, nothing else
    assert any("labels not mined: cats, dogs" in line for line in lines), lines

    mined = ["image_typicality", "patch_typicality", "patch_features", "clusters"]
    assert run_dataset(instance, cfg, "photos", select=mined, log=lines.append)["labels"] == ["cats", "dogs"]
    old = lake.read_partition("checkpoint", "photos").row(0, named=True)
    for i in range(3):
        write_image(root / "photos" / "birds" / f"{i}.png", size=(32, 32), seed=200 + i)
    lines.clear()
    added = run_dataset(instance, cfg, "photos", select=["images", "checkpoint", *mined], log=lines.append)
    assert lake.read_partition("checkpoint", "photos").row(0, named=True)["continued_from"] == old["checkpoint_id"]
    assert added["labels"] == ["birds"] and added["left_stale"] == ["cats", "dogs"], added
    assert set(added["ran"]) == {"photos", "photos / birds"}
    assert any("not mined again: cats, dogs" in line for line in lines), lines
    assert lake.read_partition("image_typicality", "photos", "cats")["checkpoint_id"][0] == old["checkpoint_id"]
    # the rest when asked for: the same command again mines what is stale, and only that
    again = run_dataset(instance, cfg, "photos", select=mined, log=lines.append)
    assert set(again["ran"]) == {"photos / cats", "photos / dogs"} and again["left_stale"] == []
    # new images in an existing label: the checkpoint continues with no new label, and what is stale is mined as before
    write_image(root / "photos" / "cats" / "9.png", size=(32, 32), seed=300)
    lines.clear()
    changed = run_dataset(instance, cfg, "photos", select=["images", "checkpoint", *mined], log=lines.append)
    assert changed["left_stale"] == [] and {"photos / birds", "photos / cats", "photos / dogs"} <= set(changed["ran"]), changed
    assert not any("not mined again" in line for line in lines)
    # the command line's runs are listed under their jobs in the UI: it asks for the job's name and its code location's label
    for job in ("photos__dataset_assets", "photos__label_assets"):
        assert len(instance.get_runs(filters=RunsFilter(job_name=job, tags={REPOSITORY_LABEL_TAG: ui_location_label()}))) >= 2, job


def ui_location_label() -> str:
    """The label the UI filters a job's runs by, as Dagster computes it for the project's workspace.yaml (and for
    `dagster dev -m`, which `diffmine ui` runs: the same name)."""
    from dagster._core.remote_origin import RemoteRepositoryOrigin
    from dagster._core.workspace.load import location_origin_from_module_name, location_origins_from_yaml_paths

    (origin,) = location_origins_from_yaml_paths([str(Path(__file__).parents[2] / "workspace.yaml")])
    assert origin.location_name == location_origin_from_module_name("diffmine_assets.definitions", None, None).location_name
    return RemoteRepositoryOrigin(origin, "__repository__").get_label()


def test_the_sensor_interval_is_set_by_the_environment_and_checked(monkeypatch):
    from diffmine_assets.sensors import SENSOR_INTERVAL_ENV, build_new_label_sensor, sensor_interval

    monkeypatch.delenv(SENSOR_INTERVAL_ENV, raising=False)
    assert sensor_interval() == 30
    monkeypatch.setenv(SENSOR_INTERVAL_ENV, "5")
    assert build_new_label_sensor([]).minimum_interval_seconds == 5
    for bad in ("0", "-3", "5s", "fast"):
        monkeypatch.setenv(SENSOR_INTERVAL_ENV, bad)
        with pytest.raises(ValueError, match=f"{SENSOR_INTERVAL_ENV}='{bad}'"):
            sensor_interval()
