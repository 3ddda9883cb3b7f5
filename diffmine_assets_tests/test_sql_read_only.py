"""`diffmine sql` reads and never writes: no statement changes a byte of the
lake, writes a file anywhere, or installs an extension; results stream (a
closed pipe ends quietly)."""

import hashlib
import json
import os
import subprocess
import sys

import polars as pl
import pytest

from diffmine_assets.cli import main as cli_main
from diffmine_assets.storage.catalog import Catalog
from diffmine_assets.storage.lake import Lake
from diffmine_assets_tests.conftest import write_config


@pytest.fixture
def lake_project(tmp_path):
    cfg = write_config(tmp_path, [{"name": "huge", "kind": "builtin"}])
    lake = Lake(tmp_path / "lake")
    lake.write_partition("images", pl.DataFrame({"dataset": ["huge"] * 13, "label": ["a"] * 13, "n": range(13)}), "huge")
    Catalog(tmp_path / "catalog.duckdb", lake).ensure_views()
    return cfg, lake


def digest(root) -> dict:
    """Every file under `root` with the hash of its bytes."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def test_no_statement_can_write(lake_project, tmp_path, capsys):
    cfg, lake = lake_project
    part = lake.partition_file("images", "huge")
    before = digest(tmp_path)
    attempts = [
        f"copy (select * from images where dataset='huge' limit 1) to '{part}' (format parquet)",
        f"copy (select 1) to '{tmp_path / 'out.csv'}'",
        f"explain analyze copy (select 1) to '{tmp_path / 'out2.csv'}'",  # EXPLAIN ANALYZE runs its statement
        f"attach '{tmp_path / 'w.duckdb'}' as w (read_only false)",
        "install httpfs",
        "load httpfs",
        "delete from images",
        "create table x as select 1",
        "set enable_external_access = true",
        f"export database '{tmp_path / 'dump'}'",
        "select 1; copy (select 1) to 'x.csv'",
    ]
    for sql in attempts:
        rc = cli_main(["--config", str(cfg), "sql", sql])
        err = capsys.readouterr().err
        assert rc == 2 and "read-only" in err and "Traceback" not in err, (sql, err)
        assert err.count("\n") == 1, err  # one line
    assert digest(tmp_path) == before  # not a byte changed, nothing new anywhere
    # reads keep working, the lake's and any file's
    assert cli_main(["--config", str(cfg), "sql", "select count(*) as n from images", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 13}]
    assert cli_main(["--config", str(cfg), "sql", f"select count(*) as n from read_parquet('{part}')", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "13"]


def test_results_stream_and_a_closed_pipe_ends_quietly(lake_project):
    cfg, _ = lake_project
    diffmine = [sys.executable, "-m", "diffmine_assets.cli", "--config", str(cfg), "sql"]
    for fmt in ("table", "csv", "json"):
        # a million rows into `head -2`: the writer meets a closed pipe
        cmd = " ".join([*diffmine, "'select range as i, range * 2 as j from range(1000000)'", "--format", fmt]) + " | head -2"
        done = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stderr == "", (fmt, done.stderr)
        assert len(done.stdout.splitlines()) == 2
    # the whole result, in order, when the reader reads it all
    done = subprocess.run([*diffmine, "select range as i from range(25000) order by i", "--format", "csv"], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines() == ["i"] + [str(i) for i in range(25000)]
    done = subprocess.run([*diffmine, "select range as i from range(25000)", "--format", "json"], capture_output=True, text=True, timeout=120)
    assert [r["i"] for r in json.loads(done.stdout)] == list(range(25000))


def test_reader_settings_are_locked_and_a_notebook_connection_coexists(lake_project, tmp_path, capsys):
    import duckdb

    cfg, lake = lake_project
    catalog = Catalog(tmp_path / "catalog.duckdb", lake)
    # a notebook's own read-only connection, in the same process, as the README suggests
    notebook = duckdb.connect(str(tmp_path / "catalog.duckdb"), read_only=True)
    try:
        with catalog.reader() as con:
            for sql in ("SET autoinstall_known_extensions = true", "SET enable_external_access = false"):
                with pytest.raises(duckdb.InvalidInputException, match="configuration has been locked"):
                    con.execute(sql)
        assert notebook.execute("select count(*) from images").fetchone() == (13,)
        for sql, want in (("show tables", "images"), ("describe images", "label"), ("summarize images", "n")):
            assert cli_main(["--config", str(cfg), "sql", sql, "--format", "csv"]) == 0
            assert want in capsys.readouterr().out, sql
    finally:
        notebook.close()
