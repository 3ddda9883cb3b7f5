"""Asset checks of a dataset's graph: they run with the assets they check,
show in the UI's Checks tab, and can fail (mining/evaluation/checks.py)."""

import numpy as np
import polars as pl
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, AssetIn, asset_check

from ..mining.arrays import load_array
from ..mining.evaluation import checks
from ..partitions import asset_key, dataset_label_partitions, dataset_of_label, dataset_partitions, split_partition_key
from .evaluation import stored_figures


def _result(outcome: checks.CheckOutcome, severity=AssetCheckSeverity.ERROR) -> AssetCheckResult:
    return AssetCheckResult(passed=outcome.passed, description=outcome.description, metadata=outcome.metadata, severity=severity)


def build_checks(spec):
    ds = spec.name
    per_label = dataset_label_partitions(ds)

    @asset_check(asset=asset_key(ds, "image_typicality"), name="maps_finite", partitions_def=per_label,
                 description="Every value of the label's typicality maps is finite.")
    def maps_finite(image_typicality: pl.DataFrame) -> AssetCheckResult:
        maps = load_array(image_typicality["map_path"][0]).astype(np.float32)
        return _result(checks.maps_finite(maps))

    @asset_check(asset=asset_key(ds, "patch_typicality"), name="top_patches_do_not_overlap", partitions_def=per_label,
                 description="No two top windows of one image overlap.")
    def no_overlap(patch_typicality: pl.DataFrame) -> AssetCheckResult:
        return _result(checks.top_patches_do_not_overlap(patch_typicality))

    @asset_check(asset=asset_key(ds, "patch_typicality"), name="label_has_patches", partitions_def=per_label,
                 description="The label has at least one top patch.")
    def has_patches(patch_typicality: pl.DataFrame) -> AssetCheckResult:
        return _result(checks.label_has_patches(patch_typicality))

    @asset_check(asset=asset_key(ds, "cluster_members"), name="members_belong_to_label", partitions_def=per_label,
                 additional_ins={"images": AssetIn(key=asset_key(ds, "images"), partition_mapping=dataset_of_label)},
                 description="Every clustered patch is one of the label's, from one of the label's images.")
    def members_belong(context: AssetCheckExecutionContext, cluster_members: pl.DataFrame, images: pl.DataFrame) -> AssetCheckResult:
        _dataset, label_key = split_partition_key(context.partition_key)
        return _result(checks.members_belong_to_label(cluster_members, images, label_key))

    @asset_check(asset=asset_key(ds, "evaluation"), name="quality_goals", partitions_def=dataset_partitions(ds),
                 description="The quality goals of a dataset with ground truth (a warning when missed).")
    def quality_goals(context: AssetCheckExecutionContext) -> AssetCheckResult:
        figures = stored_figures(context.instance, ds) or {}
        goals = figures.get("goals_met", {})
        if not goals:
            return AssetCheckResult(passed=True, description="no quality goals for this dataset (no ground truth preset)")
        return _result(checks.goals_met(figures, goals), severity=AssetCheckSeverity.WARN)

    return [maps_finite, no_overlap, has_patches, members_belong, quality_goals]
