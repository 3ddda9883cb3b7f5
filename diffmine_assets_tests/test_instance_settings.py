"""A project outside the repository gets diffmine's Dagster settings."""

import yaml

from diffmine_assets.instance import open_instance
from diffmine_assets_tests.conftest import REPO


def _project(root):
    root.mkdir(parents=True)
    cfg = root / "diffmine.yaml"
    cfg.write_text(yaml.safe_dump({"lake": "lake", "catalog": "catalog.duckdb", "datasets": [{"name": "builtin", "kind": "builtin"}]}))
    return cfg


def test_a_project_home_without_dagster_yaml_gets_the_shipped_settings_and_is_told(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    cfg = _project(tmp_path / "elsewhere")
    instance = open_instance(cfg)
    written = cfg.parent / "dagster.yaml"
    assert written.read_text() == (REPO / "dagster.yaml").read_text()
    assert f"wrote {written}" in capsys.readouterr().err
    # what Dagster's defaults would not give: no telemetry, one torch job at a time, retries
    assert not instance.telemetry_enabled
    assert instance.global_op_concurrency_default_limit == 1
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 2


def test_a_dagster_yaml_already_in_the_home_is_kept(tmp_path, monkeypatch, capsys):
    cfg = _project(tmp_path / "mine")
    own = "telemetry:\n  enabled: false\nrun_retries:\n  enabled: false\n"
    (cfg.parent / "dagster.yaml").write_text(own)
    monkeypatch.setenv("DAGSTER_HOME", str(cfg.parent))
    instance = open_instance(cfg)
    assert (cfg.parent / "dagster.yaml").read_text() == own
    assert "wrote" not in capsys.readouterr().err
    assert not instance.run_retries_enabled


def test_a_dagster_home_the_user_set_is_their_instance_and_is_only_warned_about(tmp_path, monkeypatch, capsys):
    cfg = _project(tmp_path / "project")
    theirs = tmp_path / "their_home"
    theirs.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(theirs))
    instance = open_instance(cfg)
    assert not (theirs / "dagster.yaml").exists() and not (cfg.parent / "dagster.yaml").exists()
    assert f"warning: {theirs / 'dagster.yaml'} does not exist" in capsys.readouterr().err
    assert instance.root_directory == str(theirs)


def test_the_packaged_settings_are_the_repository_s():
    assert (REPO / "diffmine_assets" / "dagster_instance.yaml").read_text() == (REPO / "dagster.yaml").read_text()
