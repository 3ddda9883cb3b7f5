"""Translations across labels and parallel mining (METHOD.md section 5)."""

import json

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, AssetIn, AssetOut, Failure, Output, asset, multi_asset

from ..mining.arrays import load_array, save_array
from ..mining.config.options import ClusterOptions
from ..mining.report.visuals import parallel_grid, translation_grid, translation_masks
from ..mining.training.checkpoints import CheckpointMismatch, checkpoint_of_rows
from ..mining.translation.parallel import CLUSTER_SCHEMA, MEMBER_SCHEMA, PARALLEL_SCHEMA
from ..mining.translation.parallel import parallel_clusters as cluster_locations
from ..mining.translation.parallel import parallel_features, parallel_locations
from ..mining.translation.tables import translate_label, translated_sets
from ..partitions import LABEL_JOB, REPORT_JOB, asset_key, dataset_label_partitions, dataset_of_label, dataset_partitions, identifier, split_partition_key
from ..resources import DiffmineResource
from ..usage import StepUsage
from .common import GPU_STEP_TAGS, TORCH_POOL, code_version, in_job, log_tenths, picture, records_table, rounded


def _translations_metadata(table: pl.DataFrame, labels: list[str], images: pl.DataFrame, label_key: str, method: str, grid_path) -> dict:
    names = dict(zip(images["label_key"], images["label"]))
    sources = table.select("image_id", "source_model_path").unique(maintain_order=True).rows()
    grid = translation_grid(sources, {(r["image_id"], r["target_label_key"]): r["path"] for r in table.iter_rows(named=True)}, labels, names, label_key,
                            translation_masks(table))
    masked = table["mask_share"].drop_nulls()
    wins = table.group_by("target_label").agg(pl.col("target_win").mean().alias("win"), pl.len().alias("n")).sort("target_label")
    return rounded({
        "translations": len(table),
        "images": len(sources),
        "method": method,
        "target_win_share": round(float(table["target_win"].mean()), 4),
        "seconds": float(table["seconds"][0]),
        "grid": picture(grid, grid_path, "translation grid (cyan: the edit mask's border; outside it the picture is the source's, up to the label-wide tint)"
                        if len(masked) else "translation grid"),
        **({"mask_share_mean": round(float(masked.mean()), 4)} if len(masked) else {}),
        "by_target": records_table(["target label", "more typical of the target", "translations"],
                                   [[r["target_label"], round(r["win"], 4), r["n"]] for r in wins.iter_rows(named=True)]),
    })


def build_translation_assets(spec):
    ds = spec.name
    per_label = dataset_label_partitions(ds)
    clusters_version = code_version(spec.translation.version(), spec.features.version(), spec.clusters.version())

    @asset(
        key=asset_key(ds, "translations"),
        # the typicality options too: the outputs are scored with them
        code_version=code_version(spec.translation.version(), spec.typicality.version()),
        partitions_def=per_label,
        ins={
            "image_typicality": AssetIn(key=asset_key(ds, "image_typicality")),
            "images": AssetIn(key=asset_key(ds, "images"), partition_mapping=dataset_of_label),
            "checkpoint": AssetIn(key=asset_key(ds, "checkpoint"), partition_mapping=dataset_of_label),
        },
        io_manager_key="lake_io",
        group_name=identifier(ds),
        tags=in_job(LABEL_JOB, "translation"),
        pool=TORCH_POOL, op_tags=GPU_STEP_TAGS,
        kinds={"pytorch", "parquet"},
        description="The label's most typical images translated into every other label (DDIM inversion, then regeneration under the "
        "target with guidance inside the edit mask where the two labels' noise predictions differ, or with Plug-and-Play injection): one row "
        "per (image, target label) with the output's path, its edit mask, its typicality under target and source, and the parameters; "
        "maps kept as arrays in the lake.",
    )
    def translations(context: AssetExecutionContext, diffmine: DiffmineResource, image_typicality: pl.DataFrame, images: pl.DataFrame, checkpoint: pl.DataFrame):
        usage = StepUsage()
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
                                          progress=log_tenths(context.log, "translations", "translation"))
        except ValueError as exc:
            raise Failure(description=f"{dataset}/{label_key}: {exc}") from None
        map_path = save_array(out_dir / "maps.npy", maps.astype(np.float16))
        table = table.with_columns(pl.lit(str(map_path)).alias("map_path"))
        if table.is_empty():
            return Output(table, metadata={"translations": 0, "note": "the checkpoint knows one label: nothing to translate into"})
        grid_path = diffmine.lake.files_dir(dataset, "pictures", label_key, f"translations-{ckpt_id}.png")
        return Output(table, metadata={**_translations_metadata(table, sorted(model.labels), images, label_key, spec.translation.method, grid_path), **usage.figures()})

    @asset(
        key=asset_key(ds, "parallel_typicality"),
        code_version=code_version(spec.translation.version(), spec.patches.version()),
        partitions_def=dataset_partitions(ds),
        ins={
            "translations": AssetIn(key=asset_key(ds, "translations"), partition_mapping=dataset_of_label),
            "image_typicality": AssetIn(key=asset_key(ds, "image_typicality"), partition_mapping=dataset_of_label),
        },
        io_manager_key="lake_io",
        group_name=identifier(ds),
        tags=in_job(REPORT_JOB, "translation"),
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
            "parallel_clusters": AssetOut(key=asset_key(ds, "parallel_clusters"), code_version=clusters_version, io_manager_key="lake_io", kinds={"parquet"}, tags=in_job(REPORT_JOB, "translation"),
                                          description="k-means clusters of the locations described by their features in every label, ranked by median typicality."),
            "parallel_cluster_members": AssetOut(key=asset_key(ds, "parallel_cluster_members"), code_version=clusters_version, io_manager_key="lake_io",
                                                 kinds={"parquet"}, tags=in_job(REPORT_JOB, "translation"), description="Each clustered location: its cluster, distance to the centre, source image and window."),
        },
        group_name=identifier(ds),
        pool=TORCH_POOL, op_tags=GPU_STEP_TAGS,
    )
    def parallel_clusters(context: AssetExecutionContext, diffmine: DiffmineResource, parallel_typicality: pl.DataFrame, checkpoint: pl.DataFrame, images: pl.DataFrame):
        usage = StepUsage()
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
            **usage.figures(),
        })
        yield Output(members, output_name="parallel_cluster_members", metadata={"members": len(members)})

    return [translations, parallel_typicality, parallel_clusters]
