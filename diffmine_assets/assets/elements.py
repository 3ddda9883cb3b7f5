"""Features of the mined patches, their clusters, and the pictures of them."""

import json

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, AssetIn, AssetOut, MetadataValue, Output, asset, multi_asset

from ..mining.checkpoints import load_checkpoint
from ..mining.clustering import cluster_patches
from ..mining.features import patch_features as compute_features
from ..mining.visuals import cluster_grid
from ..partitions import dataset_of_label, split_partition_key
from ..resources import DiffmineResource
from .metadata import md_table, picture
from .model import TORCH_POOL

def build_element_assets(label_partitions):
    @asset(
        partitions_def=label_partitions,
        ins={
            "patch_typicality": AssetIn(),
            "images": AssetIn(partition_mapping=dataset_of_label),
            "checkpoint": AssetIn(partition_mapping=dataset_of_label),
        },
        io_manager_key="lake_io",
        group_name="elements",
        pool=TORCH_POOL,
        kinds={"pytorch", "parquet"},
        description="Diffusion features (DIFT) of the label's top patches: an up-sampling block's activations at a small "
        "timestep with the label's condition, averaged over the patch, L2-normalised; a fixed-size float array column.",
    )
    def patch_features(context: AssetExecutionContext, diffmine: DiffmineResource, patch_typicality: pl.DataFrame, images: pl.DataFrame, checkpoint: pl.DataFrame):
        dataset, _label_key = split_partition_key(context.partition_key)
        opts = diffmine.dataset(dataset).features
        rows = patch_typicality if opts.selection == "all" else patch_typicality.filter(pl.col("selection") == "top")
        model = load_checkpoint(checkpoint["path"][0])
        feats = compute_features(model, rows, images, opts)
        dim = feats.shape[1]
        table = rows.select("dataset", "label", "label_key", "selection", "rank_in_label", "image_id", "x0", "y0", "x1", "y1", "typicality", "checkpoint_id").with_columns(
            pl.Series("feature", feats, dtype=pl.Array(pl.Float32, dim)),
            pl.lit(opts.block, dtype=pl.Int32).alias("feature_block"),
            pl.lit(opts.timestep, dtype=pl.Int32).alias("feature_timestep"),
            pl.lit(json.dumps(opts.model_dump(), sort_keys=True)).alias("params"),
        )
        return Output(table, metadata={"patches": len(table), "dimensions": dim, "block": opts.block, "timestep": opts.timestep})

    @multi_asset(
        partitions_def=label_partitions,
        ins={"patch_features": AssetIn(), "images": AssetIn(partition_mapping=dataset_of_label)},
        outs={
            "clusters": AssetOut(io_manager_key="lake_io", description="k-means clusters of the label's top patches, ranked by median typicality: rank, size, median and mean typicality, spread.", kinds={"parquet"}),
            "cluster_members": AssetOut(io_manager_key="lake_io", description="Each clustered patch: cluster (= rank), distance to the centre, rank in cluster (nearest first), box.", kinds={"parquet"}),
        },
        group_name="elements",
    )
    def clusters(context: AssetExecutionContext, diffmine: DiffmineResource, patch_features: pl.DataFrame, images: pl.DataFrame):
        dataset, label_key = split_partition_key(context.partition_key)
        opts = diffmine.dataset(dataset).clusters
        top = patch_features.filter(pl.col("selection") == "top")
        feats = np.stack(top["feature"].to_numpy()) if len(top) else np.zeros((0, 0))
        table, members = cluster_patches(feats, top, opts)
        ident = [pl.lit(dataset).alias("dataset"), pl.lit(top["label"][0]).alias("label"), pl.lit(label_key).alias("label_key"), pl.lit(top["checkpoint_id"][0]).alias("checkpoint_id")]
        table = table.with_columns(ident)
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
                "best": md_table(["rank", "size", "median typicality"], [[r["rank"], r["size"], f"{r['median_typicality']:.5f}"] for r in table.head(10).iter_rows(named=True)]),
            },
        )
        yield Output(members, output_name="cluster_members", metadata={"members": len(members)})

    return [patch_features, clusters]
