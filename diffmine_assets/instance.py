"""The project's Dagster instance: its home (DAGSTER_HOME, else the folder
of diffmine.yaml) and the settings a home without its own dagster.yaml gets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

SETTINGS = "dagster_instance.yaml"


def project_home(config_path: Path) -> Path:
    """DAGSTER_HOME if set; else the folder of diffmine.yaml (which holds the
    project's dagster.yaml)."""
    env = os.environ.get("DAGSTER_HOME")
    return Path(env).resolve() if env else config_path.parent


def write_settings(home: Path) -> None:
    """A project folder without dagster.yaml gets the one diffmine ships
    (telemetry off, one torch job at a time, run retries): without it Dagster
    would run with its own defaults, telemetry on and every torch job at once.
    Said on stderr. A dagster.yaml already there is the user's and is kept; a
    DAGSTER_HOME the user set is their instance, shared with other code
    locations, and is only warned about."""
    target = home / "dagster.yaml"
    if target.exists():
        return
    if os.environ.get("DAGSTER_HOME") and Path(os.environ["DAGSTER_HOME"]).resolve() == home.resolve():
        print(f"diffmine: warning: {target} does not exist, so Dagster's defaults apply (telemetry on, torch jobs not limited to one at a time); "
              f"diffmine's settings are in {SETTINGS} of the installed package", file=sys.stderr, flush=True)
        return
    from importlib.resources import files

    try:
        home.mkdir(parents=True, exist_ok=True)
        target.write_text(files("diffmine_assets").joinpath(SETTINGS).read_text())
    except OSError as exc:
        print(f"diffmine: warning: could not write {target} ({exc}), so Dagster's defaults apply", file=sys.stderr, flush=True)
        return
    print(f"diffmine: wrote {target}, this project's Dagster settings (telemetry off, one torch job at a time, "
          "run retries); edit it as you need", file=sys.stderr, flush=True)


def open_instance(config_path: Path):
    from dagster import DagsterInstance  # a few seconds to import: only the commands that run the graph pay it

    home = project_home(config_path)
    write_settings(home)
    os.environ["DAGSTER_HOME"] = str(home)
    return DagsterInstance.get()
