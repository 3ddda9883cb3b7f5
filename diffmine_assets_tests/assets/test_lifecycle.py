"""The lifecycle over days of use: a second `materialize` does only what is
missing or stale (Dagster's staleness: data versions, and code versions of
the options that change results), a continued checkpoint is kept, and only
the options that change results throw work away."""

import polars as pl
import yaml

from dagster import AssetKey, DagsterInstance
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest
from diffmine_assets.definitions import build_definitions
from diffmine_assets.mining.training.checkpoints import fit
from diffmine_assets.mining.config import TrainingOptions
from diffmine_assets.partitions import multi_key
from diffmine_assets.runner import run_dataset
from diffmine_assets.storage.lake import Lake
from diffmine_assets_tests.conftest import FAST, write_config, write_image

QUIET = dict(log=lambda *_: None)


def materializations(instance, name: str) -> int:
    return len(instance.fetch_materializations(AssetKey(["builtin", name]), limit=1000).records)


def test_a_second_materialize_does_nothing_and_an_option_that_changes_results_marks_what_it_changes_stale(project, instance):
    """Days of use in one project (one whole-graph run shared by every step
    of the story): run again, force one step, change a logging option, then
    an option that changes results."""
    first = run_dataset(instance, project, "builtin", **QUIET)
    assert first["failed_runs"] == 0 and first["runs"] == 6
    ckpt = Lake(project.parent / "lake").read_partition("checkpoint", "builtin")["checkpoint_id"][0]
    counts = {n: materializations(instance, n) for n in ("checkpoint", "image_typicality", "clusters", "report")}

    # the same command again trains nothing and scores nothing
    second = run_dataset(instance, project, "builtin", **QUIET)
    assert second["failed_runs"] == 0
    assert {n: materializations(instance, n) for n in counts} == counts
    assert Lake(project.parent / "lake").read_partition("checkpoint", "builtin")["checkpoint_id"][0] == ckpt
    assert second["ran"] == {"builtin": ["ground_truth_boxes", "images"]}  # the files are read again: that is how new data is seen
    assert second["skipped"]["checkpoint"] == 1 and second["skipped"]["image_typicality"] == 4 and second["skipped"]["report"] == 1

    forced = run_dataset(instance, project, "builtin", labels=["amber"], select=["image_typicality"], force=True, **QUIET)
    assert forced["ran"] == {"builtin / amber": ["image_typicality", "label_matrix", "typicality_history"]}

    cfg = yaml.safe_load(project.read_text())
    # a logging interval changes nothing: all stays fresh
    cfg["datasets"][0]["training"]["log_every"] = 7
    cfg["datasets"][0]["typicality"]["batch_size"] = 16
    project.write_text(yaml.safe_dump(cfg))
    defs = build_definitions(project)
    status = lambda key, part: CachingStaleStatusResolver(instance, defs.resolve_asset_graph(), LoadingContextForTest(instance)).get_status(AssetKey(["builtin", key]), part)  # noqa: E731
    assert status("checkpoint", "builtin") == StaleStatus.FRESH
    assert status("image_typicality", multi_key("builtin", "jade")) == StaleStatus.FRESH
    # the number of typicality samples does: typicality and what is below it are stale, the checkpoint is not
    cfg["datasets"][0]["typicality"]["n_samples"] = 4
    project.write_text(yaml.safe_dump(cfg))
    defs = build_definitions(project)
    assert status("checkpoint", "builtin") == StaleStatus.FRESH
    assert status("image_typicality", multi_key("builtin", "jade")) == StaleStatus.STALE
    # one label asked for: its stale stages run again, the checkpoint is kept, the other labels stay stale for the user
    again = run_dataset(instance, project, "builtin", labels=["jade"], **QUIET)
    assert again["skipped"]["checkpoint"] == 1 and "image_typicality" not in again["skipped"]
    assert set(again["ran"]) == {"builtin", "builtin / jade", "builtin (report)"}
    assert again["ran"]["builtin"] == ["ground_truth_boxes", "images"]
    assert status("image_typicality", multi_key("builtin", "jade")) == StaleStatus.FRESH
    assert status("image_typicality", multi_key("builtin", "amber")) == StaleStatus.STALE


def test_after_a_label_is_added_the_continued_checkpoint_is_kept(tmp_path, monkeypatch):
    data = tmp_path / "photos"
    for li, label in enumerate(("cats", "dogs")):
        for i in range(4):
            write_image(data / label / f"{i}.png", size=(32, 32), seed=10 * li + i)
    training = {**FAST["training"], "continue_steps": 20}
    cfg = write_config(tmp_path, [{"name": "photos", "kind": "folder", "path": "photos", "options": {"resolution": 16, "val_fraction": 0.0}, **FAST, "training": training}])
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    instance = DagsterInstance.get()
    lake = Lake(tmp_path / "lake")
    try:
        assert run_dataset(instance, cfg, "photos", select=["images", "checkpoint"], **QUIET)["failed_runs"] == 0
        for i in range(3):
            write_image(data / "birds" / f"{i}.png", size=(32, 32), seed=100 + i)
        assert run_dataset(instance, cfg, "photos", select=["images", "checkpoint"], **QUIET)["failed_runs"] == 0
        continued = lake.read_partition("checkpoint", "photos").row(0, named=True)
        assert continued["continued_from"] and continued["labels"] == ["cats", "dogs", "birds"]
        # the same data again: the continued checkpoint stays, even when the checkpoint asset is launched
        third = run_dataset(instance, cfg, "photos", select=["images", "checkpoint"], **QUIET)
        assert lake.read_partition("checkpoint", "photos").row(0, named=True)["checkpoint_id"] == continued["checkpoint_id"]
        assert third["skipped"] == {"checkpoint": 1, "training_log": 1}
        defs = build_definitions(cfg)
        launched = defs.resolve_job_def("photos__dataset_assets").execute_in_process(
            instance=instance, partition_key="photos", asset_selection=[AssetKey(["photos", "checkpoint"]), AssetKey(["photos", "training_log"])])
        assert launched.success
        kept = lake.read_partition("checkpoint", "photos").row(0, named=True)
        assert kept["checkpoint_id"] == continued["checkpoint_id"] and kept["labels"] == ["cats", "dogs", "birds"]
        meta = instance.get_latest_materialization_event(AssetKey(["photos", "checkpoint"])).asset_materialization.metadata
        assert meta["reused"].value is True
    finally:
        instance.dispose()


def test_changing_only_logging_or_saving_keeps_the_resume_state(tmp_path):
    rows = []
    for i in range(8):
        path = write_image(tmp_path / "img" / f"{i}.png", size=(16, 16), seed=i)
        rows.append({"label_key": ("a", "b")[i % 2], "path": str(path), "split": "train"})
    images = pl.DataFrame(rows)
    opts = TrainingOptions(steps=12, batch_size=4, save_every=2, log_every=2, ema_decay=0.0, channels=(16, 16), patch=1)
    part = fit("d", images, opts, 16, "v1", tmp_path / "ckpt", stop_after=6)
    assert part.result.steps == 6
    changed = opts.model_copy(update={"log_every": 5, "save_every": 3, "diagnostic_every": 4})
    rest = fit("d", images, changed, 16, "v1", tmp_path / "ckpt")
    assert rest.result.resumed_from == 6 and rest.result.steps == 12
    # an option that changes results starts afresh
    other = fit("d", images, opts.model_copy(update={"learning_rate": 5e-4}), 16, "v1", tmp_path / "ckpt")
    assert other.result.resumed_from == 0
