"""Load: the daemon backfills 4 label partitions, up to 3 runs at a time,
while another process queries the catalog in a loop. Every run succeeds, the
reader never fails, and every partition ends with exactly its rows."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from diffmine_assets.runner import run_dataset
from diffmine_assets.storage.catalog import Catalog
from diffmine_assets.storage.lake import Lake
from diffmine_assets_tests.conftest import FAST, write_config, write_image

# one more label than the queue's limit of 3 runs: the limit is exercised, and
# the test costs 4 label runs (each a process per step), not 6
LABELS = ["alpha", "beta", "gamma", "delta"]
PER_LABEL = 4

READER = textwrap.dedent("""
    import json, sys, time
    from diffmine_assets.storage.catalog import Catalog
    from diffmine_assets.storage.lake import Lake
    root, stop = sys.argv[1], sys.argv[2]
    cat = Catalog(root + "/catalog.duckdb", Lake(root + "/lake"))
    queries = errors = 0
    messages = []
    import os
    while not os.path.exists(stop):
        for sql in ("select count(*) from images", "select label_key, count(*) from image_typicality group by all"):
            try:
                cat.query(sql)
                queries += 1
            except Exception as exc:
                if "image_typicality does not exist" in str(exc):
                    continue  # before the first label is mined the view does not exist yet
                errors += 1
                messages.append(str(exc)[:300])
        time.sleep(0.02)
    print(json.dumps({"queries": queries, "errors": errors, "messages": messages[:5]}))
""")


@pytest.mark.slow
def test_daemon_backfill_under_load(tmp_path):
    for li, label in enumerate(LABELS):
        for i in range(PER_LABEL):
            write_image(tmp_path / "photos" / label / f"{i}.png", size=(32, 32), seed=100 * li + i)
    cfg = write_config(tmp_path, [{"name": "photos", "kind": "folder", "path": "photos", "options": {"resolution": 16, "val_fraction": 0.0}, **FAST}])
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path), DIFFMINE_CONFIG=str(cfg))
    os.environ["DAGSTER_HOME"] = str(tmp_path)
    instance = DagsterInstance.get()
    daemon = reader = None
    try:
        # the per-dataset assets first, so that the sensor asks for the label partitions at once
        assert run_dataset(instance, cfg, "photos", select=["images", "checkpoint"], log=lambda *_: None)["failed_runs"] == 0
        (tmp_path / "reader.py").write_text(READER)
        stop = tmp_path / "stop"
        reader = subprocess.Popen([sys.executable, str(tmp_path / "reader.py"), str(tmp_path), str(stop)], env=env, stdout=subprocess.PIPE, text=True)
        daemon_bin = os.path.join(os.path.dirname(sys.executable), "dagster-daemon")
        daemon = subprocess.Popen([daemon_bin, "run", "-m", "diffmine_assets.definitions"], env=env, cwd=tmp_path,
                                  stdout=open(tmp_path / "daemon.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
        # 4 label runs, each a process per step on 2 cores: about 6 minutes
        deadline = time.monotonic() + 720
        max_running = 0
        done = []
        while time.monotonic() < deadline:
            runs = instance.get_runs(filters=RunsFilter(job_name="photos__label_assets"))
            running = sum(r.status == DagsterRunStatus.STARTED for r in runs)
            max_running = max(max_running, running)
            done = [r for r in runs if r.status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)]
            if len(runs) >= len(LABELS) and len(done) == len(runs):
                break
            time.sleep(0.2)
        runs = instance.get_runs(filters=RunsFilter(job_name="photos__label_assets"))
        assert len(runs) == len(LABELS), [r.status for r in runs]
        assert all(r.status == DagsterRunStatus.SUCCESS for r in runs), [(r.tags.get("dagster/partition"), r.status) for r in runs]
        assert max_running >= 2  # the queue let several run at once (limit 3)
        assert max_running <= 3
    finally:
        if daemon is not None:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
        if reader is not None:
            (tmp_path / "stop").write_text("")
            out, _ = reader.communicate(timeout=60)
        instance.dispose()
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["errors"] == 0, figures["messages"]
    assert figures["queries"] > 50
    cat = Catalog(tmp_path / "catalog.duckdb", Lake(tmp_path / "lake"))
    rows = cat.query("select label, count(*), count(distinct image_id) from image_typicality group by label order by label")[1]
    assert rows == [(label, PER_LABEL, PER_LABEL) for label in sorted(LABELS)]
    print(json.dumps({"label_runs": len(runs), "max_concurrent_runs": max_running, "reader_queries": figures["queries"], "reader_errors": figures["errors"]}))
