"""The DuckDB catalog: one view per lake table, nothing else.

The catalog file holds no data, only view definitions over the lake's Parquet
globs, so a partition written later shows up in the view without touching the
catalog. When a table is seen for the first time, the writer builds a whole
new catalog file beside the old one (every table's view) and renames it over
the old one; writers take turns through a lock file. Nobody opens the catalog
itself for writing, so a reader that keeps it open (a notebook) can never make
a run wait or fail: it goes on seeing the views it opened with, and sees the
new view when it reconnects. Readers open it read-only.

A lake on object storage has no shared writable file at all: each reader
opens an in-memory DuckDB, registers the lake's fsspec filesystem with it and
creates the views at connect time (`Catalog.reader`), so `diffmine sql` reads
the store's objects directly and any number of machines query at once.
"""

from __future__ import annotations

import fcntl
import os
import random
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import duckdb

from .lake import Lake

# The last hint: within one process DuckDB refuses a read-only and a
# read-write connection to one file at once; that too passes when the other closes.
_LOCK_HINTS = ("lock", "conflicting", "resource temporarily unavailable", "different configuration")


_TRANSIENT_READ = ("invalid data", "no magic bytes", "tprotocolexception", "not a parquet file", "file size", "unexpected end")


def _is_transient_read(exc: Exception) -> bool:
    return any(h in str(exc).lower() for h in _TRANSIENT_READ)


def _is_lock_error(exc: Exception) -> bool:
    return any(h in str(exc).lower() for h in _LOCK_HINTS)


class ReadOnlyError(duckdb.Error):
    """A statement that could change something, refused before it runs."""


# What a reader may run. DuckDB's own parser says what each statement is;
# everything else (COPY, ATTACH, INSTALL/LOAD, SET, EXPORT, CREATE, DELETE,
# PRAGMA, CALL, and EXPLAIN, whose ANALYZE form executes its statement) can
# write a file, a database or the configuration, or fetch an extension.
# SELECT covers WITH, FROM-first, SHOW, DESCRIBE and SUMMARIZE; DuckDB's
# query() table function accepts only a SELECT.
READ_STATEMENTS = (duckdb.StatementType.SELECT,)

# Every reader: no extension is installed or loaded behind the user's back
# (there may be no network), and no statement can change these settings.
READER_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False, "allow_community_extensions": False}


def read_only_statement(sql: str) -> None:
    """Refuse, before anything runs, SQL that is not one read-only statement."""
    statements = duckdb.extract_statements(sql)
    if not statements:
        raise ReadOnlyError("no SQL statement to run")
    refused = [s.type.name for s in statements if s.type not in READ_STATEMENTS]
    if refused:
        raise ReadOnlyError(f"the catalog is read-only: {refused[0]} statements are refused (a query is one SELECT: "
                            "WITH, FROM-first, SHOW, DESCRIBE and SUMMARIZE are SELECTs)")
    if len(statements) > 1:
        raise ReadOnlyError(f"one statement at a time, got {len(statements)}")


def _connect_reader(path: Path, timeout_s: float = 60.0) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB (READER_CONFIG) that attaches the catalog read-only
    and then locks its configuration. Attached, not opened with that
    configuration: DuckDB refuses two connections of one process to one file
    with different configurations, and a notebook may hold a plain one."""
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        con = duckdb.connect(":memory:", config=READER_CONFIG)
        try:
            con.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS catalog (READ_ONLY)")
            con.execute("USE catalog")
            con.execute("SET lock_configuration = true")
            return con
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            con.close()
            if not _is_lock_error(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.5)


def view_sql(lake: Lake, table: str) -> str:
    glob = lake.table_glob(table).replace("'", "''")
    # union_by_name: a column added in a later version of a table reads as
    # NULL in partitions written before it.
    return f"CREATE OR REPLACE VIEW \"{table}\" AS SELECT * FROM read_parquet('{glob}', union_by_name = true, hive_partitioning = false)"


def _remote_reader(lake: Lake) -> duckdb.DuckDBPyConnection:
    # No extension is fetched (there may be no network): the objects are read
    # through the registered fsspec filesystem, not DuckDB's httpfs.
    con = duckdb.connect(":memory:", config=READER_CONFIG)
    con.register_filesystem(lake.fs)
    for t in lake.tables():
        con.execute(view_sql(lake, t))
    con.execute("SET lock_configuration = true")
    return con


class Catalog:
    def __init__(self, path: str | Path | None, lake: Lake):
        self.path = Path(path) if path is not None else None
        self.lake = lake

    def views(self) -> set[str]:
        if self.lake.remote:
            return set(self.lake.tables())
        if not self.path.exists():
            return set()
        with self.reader() as con:
            return {r[0] for r in con.execute("select view_name from duckdb_views() where not internal").fetchall()}

    def ensure_views(self, tables: list[str] | None = None) -> list[str]:
        """Give the catalog a view of each of the given (default: all) lake
        tables it lacks. Returns the tables whose view was created (none for
        a lake on object storage: its views are made at connect time)."""
        if self.lake.remote:
            return []
        wanted = [t for t in (tables if tables is not None else self.lake.tables()) if self.lake.has_table(t)]
        if not [t for t in wanted if t not in self.views()]:
            return []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._writer_turn():
            have = self.views()  # another writer may have added some meanwhile
            missing = [t for t in wanted if t not in have]
            if missing:
                self._replace(sorted(have | set(self.lake.tables()) | set(missing)))
        return missing

    @contextmanager
    def _writer_turn(self):
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _replace(self, tables: list[str]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        try:
            con = duckdb.connect(str(tmp))
            try:
                for t in tables:
                    if self.lake.has_table(t):
                        con.execute(view_sql(self.lake, t))
                con.execute("CHECKPOINT")
            finally:
                con.close()
            os.replace(tmp, self.path)
        finally:
            for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
                if leftover.exists():
                    leftover.unlink()

    def query(self, sql: str, params: dict | None = None, retries: int = 5) -> tuple[list[str], list[tuple]]:
        """Run a read-only query (see `read_only_statement`) and return
        (columns, every row)."""
        with self.stream(sql, params, retries=retries) as (columns, batches):
            return columns, [row for batch in batches for row in batch]

    @contextmanager
    def stream(self, sql: str, params: dict | None = None, batch_rows: int = 10_000, retries: int = 5):
        """Run a read-only query and yield (columns, batches): rows come
        `batch_rows` at a time as DuckDB produces them, so a result of any
        size passes through in bounded memory.

        Retried when a partition was replaced while it was read (before the
        first batch is handed out): DuckDB may open a Parquet file twice
        (schema, then scan), and a rename in between shows it new bytes with
        old metadata, a transient error that a second reading does not meet."""
        read_only_statement(sql)
        for attempt in range(retries + 1):
            with self.reader() as con:
                try:
                    cur = con.execute(sql, params or None)
                    columns = [d[0] for d in cur.description] if cur.description else []
                    first = cur.fetchmany(batch_rows) if cur.description else []
                except duckdb.Error as exc:
                    if attempt == retries or not _is_transient_read(exc):
                        raise
                    time.sleep(0.01 * (attempt + 1))
                    continue

                def batches(first=first, cur=cur):
                    batch = first
                    while batch:
                        yield batch
                        batch = cur.fetchmany(batch_rows)

                yield columns, batches()
                return
        raise AssertionError("unreachable")

    @contextmanager
    def reader(self):
        if self.lake.remote:
            con = _remote_reader(self.lake)
            try:
                yield con
            finally:
                con.close()
            return
        if not self.path.exists():
            raise FileNotFoundError(f"no catalog at {self.path}: materialize a dataset first (diffmine demo)")
        con = _connect_reader(self.path)
        try:
            yield con
        finally:
            con.close()
