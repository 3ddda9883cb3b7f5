"""The two partition dimensions: dataset (declared in diffmine.yaml) and label
(discovered from the data, registered by the `images` asset)."""

from __future__ import annotations

import warnings

from dagster import (
    BetaWarning,
    PreviewWarning,
    DynamicPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    MultiToSingleDimensionPartitionMapping,
    StaticPartitionsDefinition,
)

# diffmine pins dagster exactly and its tests cover the beta APIs it uses
# (multi-dimension partition mappings, data versions): the warnings are noise.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)

LABEL_PARTITIONS_NAME = "label"
label_partitions = DynamicPartitionsDefinition(name=LABEL_PARTITIONS_NAME)
# A per-label asset reads the per-dataset partition of its own dataset.
dataset_of_label = MultiToSingleDimensionPartitionMapping(partition_dimension_name="dataset")


def dataset_partitions(names: list[str]) -> StaticPartitionsDefinition:
    return StaticPartitionsDefinition(list(names))


def dataset_label_partitions(names: list[str]) -> MultiPartitionsDefinition:
    return MultiPartitionsDefinition({"dataset": dataset_partitions(names), "label": label_partitions})


def split_partition_key(key) -> tuple[str, str | None]:
    """(dataset, label_key) of a partition key of either kind."""
    if isinstance(key, MultiPartitionKey):
        dims = key.keys_by_dimension
        return dims["dataset"], dims["label"]
    return str(key), None


def multi_key(dataset: str, label_key: str) -> MultiPartitionKey:
    return MultiPartitionKey({"dataset": dataset, "label": label_key})
