"""Resources: the project configuration, and the IO manager that stores every
table in the lake and keeps the DuckDB catalog's views in step."""

from __future__ import annotations

import os
import socket
from functools import cached_property

import polars as pl
from dagster import (
    ConfigurableIOManager,
    ConfigurableResource,
    InputContext,
    MetadataValue,
    OutputContext,
    TableColumn,
    TableSchema,
)

from .mining.config.project import ProjectConfig, load_config
from .partitions import split_partition_key
from .storage.catalog import Catalog
from .storage.lake import Lake
from .storage.columns import describe


class DiffmineResource(ConfigurableResource):
    """The declared datasets and where their results live (diffmine.yaml)."""

    config_path: str

    @cached_property
    def project(self) -> ProjectConfig:
        return load_config(self.config_path)

    def dataset(self, name: str):
        return self.project.dataset(name)

    @property
    def lake(self) -> Lake:
        return Lake(self.project.lake)

    def setup_for_execution(self, context) -> None:
        # a step on another machine reads the arrays and checkpoints that
        # earlier steps published to the object store (no-op locally); a
        # sensor's tick (no run) reads tables only and fetches nothing
        if getattr(context, "run", None) is None:
            return
        fetched = self.lake.fetch_files()
        if fetched and context.log is not None:
            context.log.info(f"fetched {fetched} files from the lake {self.project.lake}")

    @property
    def catalog(self) -> Catalog:
        return Catalog(self.project.catalog, self.lake)


# Output metadata of a table kept per value of a column (typicality_history:
# per checkpoint) instead of replaced on each materialization.
KEEP_BY = "lake/keep_by"


def _schema(table: str, df: pl.DataFrame) -> TableSchema:
    return TableSchema(columns=[TableColumn(name=n, type=str(t), description=describe(table, n) or None) for n, t in df.schema.items()])


class LakeIOManager(ConfigurableIOManager):
    """Writes polars frames as one Parquet file per partition (atomically) and
    reads them back; the table is named by the asset key's last part. On a
    lake in object storage `catalog_path` is empty: readers build their
    views at connect time (storage/catalog.py)."""

    lake_root: str
    catalog_path: str = ""

    @property
    def _lake(self) -> Lake:
        return Lake(self.lake_root)

    def _address(self, context, key) -> tuple[str, str, str | None]:
        table = context.asset_key.path[-1]
        dataset, label_key = split_partition_key(key)
        return table, dataset, label_key

    def handle_output(self, context: OutputContext, obj: pl.DataFrame | None) -> None:
        if obj is None:
            return
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()}: the lake stores polars DataFrames, got {type(obj).__name__}")
        if not context.has_partition_key:
            raise ValueError(f"{context.asset_key.to_user_string()}: lake tables are partitioned by dataset")
        table, dataset, label_key = self._address(context, context.partition_key)
        keep_by = (context.definition_metadata or {}).get(KEEP_BY)
        if keep_by and obj.is_empty():
            # nothing to keep (a one-label dataset has no figures): the history is left as it is
            context.add_output_metadata({"dagster/row_count": 0, "table": table})
            return
        if keep_by:
            # one file per value (a history): earlier values' rows are kept
            values = obj[keep_by].unique().to_list()
            if len(values) != 1:
                raise ValueError(f"{context.asset_key.to_user_string()}: a history partition holds one {keep_by}, got {values}")
            path = self._lake.write_partition(table, obj, dataset, label_key, values[0])
        else:
            path = self._lake.write_partition(table, obj, dataset, label_key)
        Catalog(self.catalog_path or None, self._lake).ensure_views([table])
        context.add_output_metadata(
            {
                # which process wrote it: on a cluster, which worker ran the step
                "worker": f"{socket.gethostname()}:{os.getpid()}",
                "dagster/row_count": len(obj),
                "dagster/uri": MetadataValue.path(str(path)),
                "dagster/column_schema": _schema(table, obj),
                "table": table,
            }
        )

    def load_input(self, context: InputContext) -> pl.DataFrame:
        frames = []
        for key in context.asset_partition_keys:
            table, dataset, label_key = self._address(context, key)
            frames.append(self._lake.read_partition(table, dataset, label_key))
        if not frames:
            raise ValueError(f"{context.asset_key.to_user_string()}: no upstream partition to load")
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
