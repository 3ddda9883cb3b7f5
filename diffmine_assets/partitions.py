"""Partitions and asset keys: one keyed set per dataset.

Every dataset has its own assets (`<dataset>/images`, `<dataset>/clusters`,
...). The per-dataset ones are partitioned by a one-key `dataset` dimension;
the per-label ones by `dataset` x `label`, where `label` is that dataset's own
dynamic set (`<dataset>-labels`, registered by its `images` asset). So every
partition the UI offers, a "backfill all missing" included, is a (dataset,
label) pair that exists. One `label` set shared by all datasets (the layout
before) offered every label of every dataset for every dataset, and those
runs failed.
"""

from __future__ import annotations

import re
import warnings

from dagster import (
    AssetKey,
    BetaWarning,
    DynamicPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    MultiToSingleDimensionPartitionMapping,
    PreviewWarning,
    StaticPartitionsDefinition,
)

# diffmine pins dagster exactly and its tests cover the beta APIs it uses
# (multi-dimension partition mappings, data versions): the warnings are noise.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)

# A per-label asset reads the per-dataset partition of its own dataset.
dataset_of_label = MultiToSingleDimensionPartitionMapping(partition_dimension_name="dataset")


def label_partitions_name(dataset: str) -> str:
    """The name of a dataset's dynamic set of label keys."""
    return f"{dataset}-labels"


def dataset_partitions(dataset: str) -> StaticPartitionsDefinition:
    return StaticPartitionsDefinition([dataset])


def dataset_label_partitions(dataset: str) -> MultiPartitionsDefinition:
    return MultiPartitionsDefinition(
        {"dataset": dataset_partitions(dataset), "label": DynamicPartitionsDefinition(name=label_partitions_name(dataset))}
    )


def asset_key(dataset: str, name: str) -> AssetKey:
    return AssetKey([dataset, name])


def identifier(dataset: str) -> str:
    """The dataset's name as a Dagster identifier (job and op names): '-' -> '_'."""
    return re.sub(r"[^A-Za-z0-9_]", "_", dataset)


# each dataset's three jobs: <dataset>__dataset_assets, ...
DATASET_JOB = "dataset_assets"
LABEL_JOB = "label_assets"
REPORT_JOB = "report_assets"
BASELINE_JOB = "baseline_assets"  # the correspondence baseline: run on request (diffmine eval, the UI)


def job_name(dataset: str, kind: str) -> str:
    return f"{identifier(dataset)}__{kind}"


def split_partition_key(key) -> tuple[str, str | None]:
    """(dataset, label_key) of a partition key of either kind."""
    if isinstance(key, MultiPartitionKey):
        dims = key.keys_by_dimension
        return dims["dataset"], dims["label"]
    return str(key), None


def multi_key(dataset: str, label_key: str) -> MultiPartitionKey:
    return MultiPartitionKey({"dataset": dataset, "label": label_key})
