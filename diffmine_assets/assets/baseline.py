"""The correspondence baseline's patches (METHOD.md section 7), beside the
typicality patches: same schema, `method = 'correspondence'`. Its own job, run
by `diffmine eval` (or from the UI): it is a comparison, not part of mining."""

import json

import polars as pl
from dagster import AssetExecutionContext, AssetIn, Failure, Output, asset

from ..mining.baselines.correspondence import correspondence_patches
from ..partitions import asset_key, BASELINE_JOB, dataset_label_partitions, dataset_of_label, identifier, split_partition_key
from ..resources import DiffmineResource
from .common import code_version, in_job, rounded


def build_baseline_assets(spec):
    ds = spec.name

    @asset(
        key=asset_key(ds, "baseline_patches"),
        code_version=code_version(spec.baseline.version(), spec.patches.version()),
        partitions_def=dataset_label_partitions(ds),
        ins={"images": AssetIn(key=asset_key(ds, "images"), partition_mapping=dataset_of_label)},
        io_manager_key="lake_io",
        group_name=identifier(ds),
        tags=in_job(BASELINE_JOB, "baseline"),
        kinds={"parquet"},
        description="Correspondence-based mining (Doersch et al. 2012): HOG windows of the label's images, nearest neighbours among "
        "every label's windows, SVM detectors refined over alternating halves; the purest detectors' best windows, in the columns "
        "of patch_typicality (typicality = detector score), method 'correspondence'.",
    )
    def baseline_patches(context: AssetExecutionContext, diffmine: DiffmineResource, images: pl.DataFrame):
        dataset, label_key = split_partition_key(context.partition_key)
        spec = diffmine.dataset(dataset)
        opts = spec.baseline.for_window(spec.patches.window_px)
        try:
            table, info = correspondence_patches(images, label_key, opts, spec.patches.per_image, spec.patches.per_label)
        except ValueError as exc:
            raise Failure(description=f"{dataset}/{label_key}: {exc}") from None
        label = images.filter(pl.col("label_key") == label_key)["label"][0]
        table = table.with_columns(
            pl.lit(dataset).alias("dataset"), pl.lit(label).alias("label"), pl.lit(label_key).alias("label_key"),
            pl.lit("correspondence").alias("method"), pl.lit(json.dumps(opts.result_options(), sort_keys=True)).alias("params"),
        )
        return Output(table, metadata=rounded({"patches": len(table), **{k: v for k, v in info.items() if isinstance(v, (int, float))},
                                               "purity_of_kept": str(rounded(info["purity_of_kept"]))}))

    return [baseline_patches]
