"""Features of the mined patches, their clusters, and the pictures of them."""

import json

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, AssetIn, AssetOut, Failure, Output, asset, multi_asset

from ..mining.clustering import cluster_patches
from ..mining.features import patch_features as compute_features
from ..mining.report.visuals import cluster_grid
from ..mining.training.checkpoints import CheckpointMismatch, checkpoint_of_rows
from ..partitions import LABEL_JOB, asset_key, dataset_label_partitions, dataset_of_label, identifier, split_partition_key
from ..resources import DiffmineResource
from ..usage import StepUsage
from .common import GPU_STEP_TAGS, TORCH_POOL, code_version, in_job, picture, records_table


def build_element_assets(spec):
    ds = spec.name
    per_label = dataset_label_partitions(ds)
    clusters_version = code_version(spec.clusters.version())

    @asset(
        key=asset_key(ds, "patch_features"),
        code_version=code_version(spec.features.version()),
        partitions_def=per_label,
        ins={
            "patch_typicality": AssetIn(key=asset_key(ds, "patch_typicality")),
            "images": AssetIn(key=asset_key(ds, "images"), partition_mapping=dataset_of_label),
            "checkpoint": AssetIn(key=asset_key(ds, "checkpoint"), partition_mapping=dataset_of_label),
        },
        io_manager_key="lake_io",
        group_name=identifier(ds),
        tags=in_job(LABEL_JOB, "elements"),
        pool=TORCH_POOL, op_tags=GPU_STEP_TAGS,
        kinds={"pytorch", "parquet"},
        description="Diffusion features (DIFT) of the label's top patches: an up-sampling block's activations at a small "
        "timestep with the label's condition, averaged over the patch, L2-normalised; a fixed-size float array column.",
    )
    def patch_features(context: AssetExecutionContext, diffmine: DiffmineResource, patch_typicality: pl.DataFrame, images: pl.DataFrame, checkpoint: pl.DataFrame):
        usage = StepUsage()
        dataset, _label_key = split_partition_key(context.partition_key)
        opts = diffmine.dataset(dataset).features
        rows = patch_typicality if opts.selection == "all" else patch_typicality.filter(pl.col("selection") == "top")
        try:
            # the weights that scored these patches, not whatever is current
            model = checkpoint_of_rows(rows, checkpoint.row(0, named=True), diffmine.lake.files_dir(dataset, "checkpoints"))
        except CheckpointMismatch as exc:
            raise Failure(description=f"{dataset}/{_label_key}: {exc}") from None
        feats = compute_features(model, rows, images, opts)
        dim = feats.shape[1]
        table = rows.select("dataset", "label", "label_key", "selection", "rank_in_label", "image_id", "x0", "y0", "x1", "y1", "typicality", "checkpoint_id").with_columns(
            pl.Series("feature", feats, dtype=pl.Array(pl.Float32, dim)),
            pl.lit(opts.block, dtype=pl.Int32).alias("feature_block"),
            pl.lit(opts.timestep, dtype=pl.Int32).alias("feature_timestep"),
            pl.lit(json.dumps(opts.model_dump(), sort_keys=True)).alias("params"),
        )
        return Output(table, metadata={"patches": len(table), "dimensions": dim, "block": opts.block, "timestep": opts.timestep, **usage.figures()})

    @multi_asset(
        name=f"{identifier(ds)}__clusters",
        partitions_def=per_label,
        ins={"patch_features": AssetIn(key=asset_key(ds, "patch_features")), "images": AssetIn(key=asset_key(ds, "images"), partition_mapping=dataset_of_label)},
        outs={
            "clusters": AssetOut(key=asset_key(ds, "clusters"), code_version=clusters_version, io_manager_key="lake_io", tags=in_job(LABEL_JOB, "elements"), description="k-means clusters of the label's top patches, ranked by median typicality: rank, size, median and mean typicality, spread.", kinds={"parquet"}),
            "cluster_members": AssetOut(key=asset_key(ds, "cluster_members"), code_version=clusters_version, io_manager_key="lake_io", tags=in_job(LABEL_JOB, "elements"), description="Each clustered patch: cluster (= rank), distance to the centre, rank in cluster (nearest first), box.", kinds={"parquet"}),
        },
        group_name=identifier(ds),
    )
    def clusters(context: AssetExecutionContext, diffmine: DiffmineResource, patch_features: pl.DataFrame, images: pl.DataFrame):
        usage = StepUsage()
        dataset, label_key = split_partition_key(context.partition_key)
        opts = diffmine.dataset(dataset).clusters
        top = patch_features.filter(pl.col("selection") == "top")
        feats = np.stack(top["feature"].to_numpy()) if len(top) else np.zeros((0, 0))
        table, members = cluster_patches(feats, top, opts)
        ident = [pl.lit(dataset).alias("dataset"), pl.lit(top["label"][0]).alias("label"), pl.lit(label_key).alias("label_key"), pl.lit(top["checkpoint_id"][0]).alias("checkpoint_id")]
        # what the clusters were made with, the features' options within: the evaluation records them with its cluster figures
        made = {**opts.model_dump(), "features": json.loads(top["params"][0]) if "params" in top.columns else None}
        table = table.with_columns(*ident, pl.lit(json.dumps(made, sort_keys=True)).alias("params"))
        members = members.with_columns(ident)
        paths = dict(zip(images["image_id"], images["path"]))
        grid = cluster_grid(table, members, paths)
        yield Output(
            table,
            output_name="clusters",
            metadata={
                "clusters": len(table),
                "patches": len(members),
                "grid": picture(grid, diffmine.lake.files_dir(dataset, "pictures", label_key, f"clusters-{top['checkpoint_id'][0]}.png"), "cluster grid"),
                "best": records_table(["rank", "size", "median typicality"], [[r["rank"], r["size"], round(r["median_typicality"], 6)] for r in table.head(10).iter_rows(named=True)]),
                **usage.figures(),
            },
        )
        yield Output(members, output_name="cluster_members", metadata={"members": len(members)})

    return [patch_features, clusters]
