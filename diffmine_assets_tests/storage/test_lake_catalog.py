import os
import subprocess
import sys
import textwrap
import threading
import time

import duckdb
import polars as pl
import pytest

from diffmine_assets.storage.catalog import Catalog
from diffmine_assets.storage.lake import Lake, LakeError


def frame(n, label="a", start=0):
    return pl.DataFrame({"dataset": ["d"] * n, "label": [label] * n, "x": list(range(start, start + n))})


def test_rewriting_a_partition_replaces_exactly_its_rows(tmp_path):
    lake = Lake(tmp_path / "lake")
    cat = Catalog(tmp_path / "c.duckdb", lake)
    lake.write_partition("t", frame(3, "a"), "d", "a")
    lake.write_partition("t", frame(2, "b"), "d", "b")
    assert cat.ensure_views() == ["t"]
    lake.write_partition("t", frame(5, "a", start=10), "d", "a")
    with cat.reader() as con:
        rows = con.execute("select label, count(*), min(x) from t group by label order by label").fetchall()
    assert rows == [("a", 5, 10), ("b", 2, 0)]
    assert cat.ensure_views() == []  # view already there: the catalog is not opened for writing


def test_no_temporary_file_is_left_or_read(tmp_path, monkeypatch):
    lake = Lake(tmp_path / "lake")
    lake.write_partition("t", frame(3), "d", "a")
    # a crash during the write leaves the old partition whole
    def boom(*a, **k):
        raise RuntimeError("killed")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(RuntimeError):
        lake.write_partition("t", frame(7), "d", "a")
    monkeypatch.undo()
    files = [p.name for p in (tmp_path / "lake" / "t").rglob("*")]
    assert not [f for f in files if f.endswith(".tmp")]
    assert len(lake.read_partition("t", "d", "a")) == 3


def test_unsafe_names_never_reach_the_file_system(tmp_path):
    lake = Lake(tmp_path)
    for bad in ["../x", "a/b", "", "A"]:
        with pytest.raises(LakeError):
            lake.partition_dir("t", bad)
    with pytest.raises(LakeError, match="materialize it first"):
        lake.read_partition("t", "d")


def test_readers_are_read_only_and_run_while_writers_write(tmp_path):
    lake = Lake(tmp_path / "lake")
    cat = Catalog(tmp_path / "c.duckdb", lake)
    lake.write_partition("t", frame(10), "d", "a")
    cat.ensure_views()
    with cat.reader() as con:
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("drop view t")
    errors, counts = [], []

    def read_loop():
        for _ in range(200):
            try:
                counts.append(cat.query("select count(*) from t where label = 'a'")[1][0][0])
            except Exception as exc:  # pragma: no cover - what the test looks for
                errors.append(exc)

    reader = threading.Thread(target=read_loop)
    reader.start()
    for i in range(40):
        lake.write_partition("t", frame(10 + (i % 2)), "d", "a")
    lake.write_partition("u", frame(1), "d", "a")
    cat.ensure_views()  # a new table while readers read: retried, not failed
    reader.join()
    assert not errors
    assert set(counts) <= {10, 11}
    assert "u" in cat.views()


HOLDER = textwrap.dedent("""
    import sys, time, duckdb
    path, stop = sys.argv[1], sys.argv[2]
    con = duckdb.connect(path, read_only=True)  # a notebook that keeps the catalog open
    print(sorted(r[0] for r in con.execute("select view_name from duckdb_views() where not internal").fetchall()), flush=True)
    import os
    while not os.path.exists(stop):
        time.sleep(0.05)
    con.close()
    con = duckdb.connect(path, read_only=True)  # and reconnects later
    print(sorted(r[0] for r in con.execute("select view_name from duckdb_views() where not internal").fetchall()), flush=True)
""")


def test_a_reader_holding_the_catalog_open_never_fails_a_run(project, instance):
    """A run that adds a table while a notebook holds the catalog open
    succeeds at once; the notebook sees the new view after reconnecting."""
    from diffmine_assets.runner import run_dataset

    root = project.parent
    assert run_dataset(instance, project, "builtin", select=["images"], log=lambda *_: None)["failed_runs"] == 0
    (root / "holder.py").write_text(HOLDER)
    stop = root / "stop"
    holder = subprocess.Popen([sys.executable, str(root / "holder.py"), str(root / "catalog.duckdb"), str(stop)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "['images']"
        started = time.monotonic()
        figures = run_dataset(instance, project, "builtin", select=["checkpoint"], log=lambda *_: None)
        seconds = time.monotonic() - started
        assert figures["failed_runs"] == 0
        assert seconds < 30  # no wait on the reader's lock (it used to wait 60 s, then fail)
    finally:
        stop.write_text("")
        out, _ = holder.communicate(timeout=60)
    assert "checkpoint" in out and "training_log" in out
