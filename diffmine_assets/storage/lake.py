"""The lake: every table is Parquet, one file per partition, hive style.

``<root>/<table>/dataset=<d>/[label=<key>/]part.parquet``. A partition is
written to a temporary file in its own folder, flushed, then renamed over the
old one: a reader sees the old file or the new one, never half of either, and
re-writing a partition replaces exactly its rows. Large arrays and pictures
live beside the tables under ``<root>/files/<dataset>/...`` and are referenced
by path.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import polars as pl

_SEGMENT = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
PART_FILE = "part.parquet"


class LakeError(ValueError):
    pass


def _check(name: str, what: str) -> str:
    if not _SEGMENT.match(name or ""):
        raise LakeError(f"invalid {what} {name!r} for a lake path")
    return name


class Lake:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def table_dir(self, table: str) -> Path:
        return self.root / _check(table, "table name")

    def partition_dir(self, table: str, dataset: str, label_key: str | None = None, checkpoint: str | None = None) -> Path:
        d = self.table_dir(table) / f"dataset={_check(dataset, 'dataset')}"
        if label_key is not None:
            d = d / f"label={_check(label_key, 'label key')}"
        if checkpoint is not None:
            d = d / f"checkpoint={_check(checkpoint, 'checkpoint id')}"
        return d

    def partition_file(self, table: str, dataset: str, label_key: str | None = None, checkpoint: str | None = None) -> Path:
        return self.partition_dir(table, dataset, label_key, checkpoint) / PART_FILE

    def table_glob(self, table: str) -> str:
        """All partition files of a table, whether or not it has a label level."""
        return str(self.table_dir(table) / "**" / PART_FILE)

    def files_dir(self, dataset: str, *parts: str) -> Path:
        d = self.root / "files" / _check(dataset, "dataset")
        for p in parts:
            d = d / p
        return d

    def write_partition(self, table: str, df: pl.DataFrame, dataset: str, label_key: str | None = None, checkpoint: str | None = None) -> Path:
        target = self.partition_file(table, dataset, label_key, checkpoint)
        target.parent.mkdir(parents=True, exist_ok=True)
        # The temporary name does not end in .parquet, so the catalog's glob
        # never picks up a file that is still being written.
        tmp = target.with_name(f".{PART_FILE}.{uuid.uuid4().hex}.tmp")
        try:
            df.write_parquet(tmp, compression="zstd", statistics=True)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        return target

    def read_partition(self, table: str, dataset: str, label_key: str | None = None) -> pl.DataFrame:
        path = self.partition_file(table, dataset, label_key)
        if not path.exists():
            raise LakeError(f"table {table!r} has no partition dataset={dataset}" + (f", label={label_key}" if label_key else "") + f" (expected {path}); materialize it first")
        return pl.read_parquet(path)

    def has_table(self, table: str) -> bool:
        d = self.table_dir(table)
        return d.exists() and any(d.rglob(PART_FILE))

    def tables(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name != "files" and self.has_table(p.name))
