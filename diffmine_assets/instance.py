"""The project's Dagster instance: its home (DAGSTER_HOME, else the folder
of diffmine.yaml) and the settings a home without its own dagster.yaml gets."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def project_home(config_path: Path) -> Path:
    """DAGSTER_HOME if set; else the folder of diffmine.yaml (which holds the
    project's dagster.yaml)."""
    env = os.environ.get("DAGSTER_HOME")
    return Path(env).resolve() if env else config_path.parent


def write_settings(home: Path) -> None:
    """A project home without dagster.yaml gets the one diffmine ships
    (telemetry off, one torch job at a time, run retries): without it Dagster
    would run with its own defaults, telemetry on and every torch job at once.
    Said on stderr; a dagster.yaml already there is the user's and is kept."""
    target = home / "dagster.yaml"
    if not target.exists():
        from importlib.resources import files

        home.mkdir(parents=True, exist_ok=True)
        target.write_text(files("diffmine_assets").joinpath("dagster_instance.yaml").read_text())
        print(f"diffmine: wrote {target}, this project's Dagster settings (telemetry off, one torch job at a time, "
              "run retries); edit it as you need", file=sys.stderr, flush=True)


def open_instance(config_path: Path):
    from dagster import DagsterInstance  # a few seconds to import: only the commands that run the graph pay it

    home = project_home(config_path)
    os.environ["DAGSTER_HOME"] = str(home)
    write_settings(home)
    return DagsterInstance.get()
