"""Translations across labels and parallel mining (METHOD.md section 5)."""

import json

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, AssetIn, AssetOut, Failure, Output, asset, multi_asset

from ..mining.checkpoints import CheckpointMismatch, checkpoint_of_rows
from ..mining.datasets.spec import ClusterOptions
from ..mining.parallel import parallel_clusters as cluster_locations
from ..mining.parallel import parallel_features, parallel_grid, parallel_locations, translation_grid
from ..mining.tables import load_array, save_array
from ..mining.translation_tables import translate_label, translated_sets
from ..partitions import asset_key, dataset_label_partitions, dataset_of_label, dataset_partitions, identifier, split_partition_key
from ..resources import DiffmineResource
from .metadata import picture, records_table
from .model import GPU_STEP_TAGS, TORCH_POOL
from .typicality import _tenths
from .versions import code_versions


PARALLEL_SCHEMA = {"location": pl.Int32, "image_id": pl.String, "source_label_key": pl.String, "x0": pl.Int32, "y0": pl.Int32, "x1": pl.Int32, "y1": pl.Int32,
                   "width": pl.Int32, "height": pl.Int32, "label_key": pl.String, "version_path": pl.String, "typicality": pl.Float64,
                   "median_typicality": pl.Float64, "dataset": pl.String, "checkpoint_id": pl.String, "params": pl.String}
CLUSTER_SCHEMA = {"cluster": pl.Int32, "rank": pl.Int32, "size": pl.Int32, "median_typicality": pl.Float64, "mean_typicality": pl.Float64,
                  "typicality_std": pl.Float64, "spread": pl.Float64, "params": pl.String, "inertia": pl.Float64, "dataset": pl.String, "checkpoint_id": pl.String}
MEMBER_SCHEMA = {"image_id": pl.String, "x0": pl.Int32, "y0": pl.Int32, "x1": pl.Int32, "y1": pl.Int32, "median_typicality": pl.Float64, "location": pl.Int32,
                 "cluster": pl.Int32, "distance": pl.Float64, "rank_in_cluster": pl.Int32, "source_label_key": pl.String, "dataset": pl.String, "checkpoint_id": pl.String}


def build_translation_assets(spec):
    ds = spec.name
    versions = code_versions(spec)
    per_label = dataset_label_partitions(ds)

    @asset(
        key=asset_key(ds, "translations"),
        code_version=versions["translations"],
        partitions_def=per_label,
        ins={
            "image_typicality": AssetIn(key=asset_key(ds, "image_typicality")),
            "images": AssetIn(key=asset_key(ds, "images"), partition_mapping=dataset_of_label),
            "checkpoint": AssetIn(key=asset_key(ds, "checkpoint"), partition_mapping=dataset_of_label),
        },
        io_manager_key="lake_io",
        group_name="translation",
        pool=TORCH_POOL, op_tags=GPU_STEP_TAGS,
        kinds={"pytorch", "parquet"},
        description="The label's most typical images translated into every other label (DDIM inversion, then regeneration under the "
        "target with guidance and Plug-and-Play injection): one row per (image, target label) with the output's path, its typicality "
        "under target and source, and the parameters; maps kept as arrays in the lake.",
    )
    def translations(context: AssetExecutionContext, diffmine: DiffmineResource, image_typicality: pl.DataFrame, images: pl.DataFrame, checkpoint: pl.DataFrame):
        dataset, label_key = split_partition_key(context.partition_key)
        spec = diffmine.dataset(dataset)
        try:
            model = checkpoint_of_rows(image_typicality, checkpoint.row(0, named=True), diffmine.lake.files_dir(dataset, "checkpoints"))
        except CheckpointMismatch as exc:
            raise Failure(description=f"{dataset}/{label_key}: {exc}") from None
        ckpt_id = image_typicality["checkpoint_id"][0]
        out_dir = diffmine.lake.files_dir(dataset, "translations", label_key, ckpt_id)
        try:
            table, maps = translate_label(model, image_typicality, images, label_key, spec.translation, spec.typicality, out_dir, ckpt_id,
                                          progress=_tenths(context.log, "translations", stage="translation"))
        except ValueError as exc:
            raise Failure(description=f"{dataset}/{label_key}: {exc}") from None
        map_path = save_array(out_dir / "maps.npy", maps.astype(np.float16))
        table = table.with_columns(pl.lit(str(map_path)).alias("map_path"))
        if table.is_empty():
            return Output(table, metadata={"translations": 0, "note": "the checkpoint knows one label: nothing to translate into"})
        labels = sorted(set(model.labels))
        names = dict(zip(images["label_key"], images["label"]))
        sources = table.select("image_id", "source_model_path").unique(maintain_order=True).rows()
        grid = translation_grid(sources, {(r["image_id"], r["target_label_key"]): r["path"] for r in table.iter_rows(named=True)}, labels, names, label_key)
        wins = table.group_by("target_label").agg(pl.col("target_win").mean().alias("win"), pl.len().alias("n")).sort("target_label")
        return Output(table, metadata={
            "translations": len(table),
            "images": len(sources),
            "method": spec.translation.method,
            "target_win_share": round(float(table["target_win"].mean()), 4),
            "seconds": float(table["seconds"][0]),
            "grid": picture(grid, diffmine.lake.files_dir(dataset, "pictures", label_key, f"translations-{ckpt_id}.png"), "translation grid"),
            "by_target": records_table(["target label", "more typical of the target", "translations"], [[r["target_label"], round(r["win"], 4), r["n"]] for r in wins.iter_rows(named=True)]),
        })

    @asset(
        key=asset_key(ds, "parallel_typicality"),
        code_version=versions["parallel_typicality"],
        partitions_def=dataset_partitions(ds),
        ins={
            "translations": AssetIn(key=asset_key(ds, "translations"), partition_mapping=dataset_of_label),
            "image_typicality": AssetIn(key=asset_key(ds, "image_typicality"), partition_mapping=dataset_of_label),
        },
        io_manager_key="lake_io",
        group_name="translation",
        kinds={"parquet"},
        description="The best locations of the translated sets: each version's typicality under its own label at the same window, "
        "the location's score the median over labels. One row per (location, label).",
    )
    def parallel_typicality(context: AssetExecutionContext, diffmine: DiffmineResource, translations: pl.DataFrame, image_typicality: pl.DataFrame):
        dataset = context.partition_key
        spec = diffmine.dataset(dataset)
        labels = sorted(set(translations["label_key"]) | set(translations["target_label_key"]))
        complete = translations.group_by("image_id").agg(pl.col("target_label_key").n_unique().alias("n")).filter(pl.col("n") == len(labels) - 1)
        rows = translations.join(complete.select("image_id"), on="image_id")
        if rows.is_empty():  # one label, or labels not translated yet: nothing to follow across labels
            context.log.warning(f"{dataset}: no image is translated into every label; parallel mining has nothing to read")
            return Output(pl.DataFrame(schema=PARALLEL_SCHEMA), metadata={"locations": 0, "labels": len(labels), "translated_sets": 0})
        sets = translated_sets(rows, image_typicality, load_array)
        table = parallel_locations(sets, labels, spec.patches, spec.translation.top).with_columns(
            pl.lit(dataset).alias("dataset"),
            pl.lit(translations["checkpoint_id"][0]).alias("checkpoint_id"),
            pl.lit(json.dumps({"patches": spec.patches.result_options(), "top": spec.translation.top}, sort_keys=True)).alias("params"),
        )
        return Output(table, metadata={"locations": int(table["location"].n_unique()), "labels": len(labels), "translated_sets": len(sets)})

    @multi_asset(
        name=f"{identifier(ds)}__parallel_clusters",
        partitions_def=dataset_partitions(ds),
        ins={
            "parallel_typicality": AssetIn(key=asset_key(ds, "parallel_typicality")),
            "checkpoint": AssetIn(key=asset_key(ds, "checkpoint")),
            "images": AssetIn(key=asset_key(ds, "images")),
        },
        outs={
            "parallel_clusters": AssetOut(key=asset_key(ds, "parallel_clusters"), code_version=versions["parallel_clusters"], io_manager_key="lake_io", kinds={"parquet"},
                                          description="k-means clusters of the locations described by their features in every label, ranked by median typicality."),
            "parallel_cluster_members": AssetOut(key=asset_key(ds, "parallel_cluster_members"), code_version=versions["parallel_clusters"], io_manager_key="lake_io",
                                                 kinds={"parquet"}, description="Each clustered location: its cluster, distance to the centre, source image and window."),
        },
        group_name="translation",
        pool=TORCH_POOL, op_tags=GPU_STEP_TAGS,
    )
    def parallel_clusters(context: AssetExecutionContext, diffmine: DiffmineResource, parallel_typicality: pl.DataFrame, checkpoint: pl.DataFrame, images: pl.DataFrame):
        dataset = context.partition_key
        spec = diffmine.dataset(dataset)
        try:
            model = checkpoint_of_rows(parallel_typicality, checkpoint.row(0, named=True), diffmine.lake.files_dir(dataset, "checkpoints"))
        except CheckpointMismatch as exc:
            raise Failure(description=f"{dataset}: {exc}") from None
        if parallel_typicality.is_empty():
            yield Output(pl.DataFrame(schema=CLUSTER_SCHEMA), output_name="parallel_clusters", metadata={"clusters": 0})
            yield Output(pl.DataFrame(schema=MEMBER_SCHEMA), output_name="parallel_cluster_members", metadata={"members": 0})
            return
        labels = sorted(parallel_typicality["label_key"].unique().to_list())
        feats = parallel_features(model, parallel_typicality, labels, spec.features)
        opts = ClusterOptions(k=spec.translation.k, seed=spec.clusters.seed, n_init=spec.clusters.n_init)
        clusters, members = cluster_locations(feats, parallel_typicality, opts)
        ident = [pl.lit(dataset).alias("dataset"), pl.lit(parallel_typicality["checkpoint_id"][0]).alias("checkpoint_id")]
        clusters, members = clusters.with_columns(ident), members.with_columns(ident)
        names = dict(zip(images["label_key"], images["label"]))
        grid = parallel_grid(clusters, members, parallel_typicality, labels, names)
        yield Output(clusters, output_name="parallel_clusters", metadata={
            "clusters": len(clusters),
            "locations": len(members),
            "grid": picture(grid, diffmine.lake.files_dir(dataset, "pictures", f"parallel-{parallel_typicality['checkpoint_id'][0]}.png"), "parallel clusters"),
        })
        yield Output(members, output_name="parallel_cluster_members", metadata={"members": len(members)})

    return [translations], [parallel_typicality, parallel_clusters]
