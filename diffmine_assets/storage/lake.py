"""The lake: every table is Parquet, one file per partition, hive style.

``<root>/<table>/dataset=<d>/[label=<key>/]part.parquet``. The root is a local
folder (the laptop) or an object-store URL such as ``s3://bucket/prefix`` (a
cluster: docs/DEPLOY.md); the same code writes both through fsspec.

Locally a partition is written to a temporary file in its own folder, flushed,
then renamed over the old one. On an object store there is no rename: the
partition is serialised in memory and put as one object, which S3 makes
visible whole or not at all. Either way a reader sees the old partition or the
new one, never half of either, and re-writing a partition replaces exactly
its rows.

Large arrays, checkpoints and pictures live beside the tables under
``<root>/files/<dataset>/...``. The code that writes them (torch, diffusers,
numpy, PIL) needs a local path, so on an object store they are written into a
local mirror of ``files/`` and published whole (`Mirror`) before the table
that names them is written; a step on another machine fetches what it lacks
before it reads them.
"""

from __future__ import annotations

import io
import os
import re
import uuid
from pathlib import Path

import polars as pl
from upath import UPath

from .mirror import Mirror, default_mirror_root
from .objects import is_remote, object_fs

_SEGMENT = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
PART_FILE = "part.parquet"
FILES = "files"


class LakeError(ValueError):
    pass


def _check(name: str, what: str) -> str:
    if not _SEGMENT.match(name or ""):
        raise LakeError(f"invalid {what} {name!r} for a lake path")
    return name


class Lake:
    def __init__(self, root: str | os.PathLike, mirror: str | os.PathLike | None = None):
        text = str(root)
        self.remote = is_remote(text)
        if self.remote:
            self.url = text.rstrip("/")
            self.fs, self._base = object_fs(self.url)
            self._base = self._base.rstrip("/")
            self.root = UPath(self.url, **self.fs.storage_options)
            self.mirror = Mirror(self.fs, f"{self._base}/{FILES}", Path(mirror) if mirror else default_mirror_root(self.url))
            self.local_root = self.mirror.local_root
        else:
            self.root = Path(text[len("file://"):] if text.startswith("file://") else text)
            self.url = str(self.root)
            self.fs = None
            self.mirror = None
            self.local_root = self.root

    def __repr__(self) -> str:
        return f"Lake({self.url!r})"

    # -- addresses --------------------------------------------------------
    def table_dir(self, table: str):
        return self.root / _check(table, "table name")

    def partition_dir(self, table: str, dataset: str, label_key: str | None = None, checkpoint: str | None = None):
        d = self.table_dir(table) / f"dataset={_check(dataset, 'dataset')}"
        if label_key is not None:
            d = d / f"label={_check(label_key, 'label key')}"
        if checkpoint is not None:
            d = d / f"checkpoint={_check(checkpoint, 'checkpoint id')}"
        return d

    def partition_file(self, table: str, dataset: str, label_key: str | None = None, checkpoint: str | None = None):
        """Where the partition lives: a Path locally, a UPath on an object store."""
        return self.partition_dir(table, dataset, label_key, checkpoint) / PART_FILE

    def _key(self, path) -> str:
        """The fsspec key of a remote address (the URL without its scheme)."""
        return self._base + str(path)[len(self.url):]

    def table_glob(self, table: str) -> str:
        """All partition files of a table, whether or not it has a label level
        (a local glob, or a URL glob that DuckDB reads through fsspec)."""
        return f"{self.table_dir(table)}/**/{PART_FILE}"

    def files_dir(self, dataset: str, *parts: str) -> Path:
        """A local folder under ``files/<dataset>``: the lake itself locally,
        the mirror on an object store (published by `publish_files`)."""
        d = self.local_root / FILES / _check(dataset, "dataset")
        for p in parts:
            d = d / p
        return d

    # -- tables -----------------------------------------------------------
    def has_partition(self, table: str, dataset: str, label_key: str | None = None) -> bool:
        path = self.partition_file(table, dataset, label_key)
        return self.fs.exists(self._key(path)) if self.remote else path.exists()

    def write_partition(self, table: str, df: pl.DataFrame, dataset: str, label_key: str | None = None, checkpoint: str | None = None):
        target = self.partition_file(table, dataset, label_key, checkpoint)
        if self.remote:
            # the files a row names are in the store before the row is
            self.mirror.publish(dataset)
            buf = io.BytesIO()
            df.write_parquet(buf, compression="zstd", statistics=True)
            self.fs.pipe_file(self._key(target), buf.getvalue())
            return target
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

    def read_partition(self, table: str, dataset: str, label_key: str | None = None, columns: list[str] | None = None) -> pl.DataFrame:
        df = self.read_partition_or_none(table, dataset, label_key, columns)
        if df is None:
            raise LakeError(f"table {table!r} has no partition dataset={dataset}" + (f", label={label_key}" if label_key else "")
                            + f" (expected {self.partition_file(table, dataset, label_key)}); materialize it first")
        return df

    def read_partition_or_none(self, table: str, dataset: str, label_key: str | None = None, columns: list[str] | None = None) -> pl.DataFrame | None:
        """The partition, or None when it was never written (one request on a store)."""
        path = self.partition_file(table, dataset, label_key)
        if self.remote:
            try:
                data = self.fs.cat_file(self._key(path))
            except FileNotFoundError:
                return None
            return pl.read_parquet(io.BytesIO(data), columns=columns)
        return pl.read_parquet(path, columns=columns) if path.exists() else None

    def has_table(self, table: str) -> bool:
        if self.remote:
            return bool(self.fs.glob(f"{self._base}/{_check(table, 'table name')}/**/{PART_FILE}"))
        d = self.table_dir(table)
        return d.exists() and any(d.rglob(PART_FILE))

    def tables(self) -> list[str]:
        if self.remote:
            # one listing per table folder: files/ (arrays, images) is never listed
            try:
                names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self._base, detail=False)]
            except FileNotFoundError:
                return []
            return sorted(n for n in names if n != FILES and _SEGMENT.match(n) and self.has_table(n))
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name != FILES and self.has_table(p.name))

    # -- files ------------------------------------------------------------
    def publish_files(self) -> int:
        """Put every file written into the mirror since its last publication
        (none locally). Returns how many."""
        return self.mirror.publish() if self.remote else 0

    def fetch_files(self) -> int:
        """Fetch the files other machines published that this one lacks or
        holds an older version of (none locally). Returns how many."""
        return self.mirror.fetch() if self.remote else 0
