import os
import threading

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
