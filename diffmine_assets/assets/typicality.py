"""Typicality of each label's images, and the patches mined from it."""

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, AssetIn, AssetOut, Failure, MetadataValue, Output, asset, multi_asset

from ..mining.arrays import load_array, save_array
from ..mining.denoisers.base import UnknownLabelError
from ..mining.patches import patch_table
from ..mining.report.visuals import heatmaps, patch_strips
from ..mining.training.checkpoints import load_checkpoint
from ..mining.typicality.score import ScoredGroup, score_labels
from ..partitions import LABEL_JOB, asset_key, dataset_label_partitions, dataset_of_label, identifier, split_partition_key
from ..resources import DiffmineResource
from ..usage import StepUsage
from .common import GPU_STEP_TAGS, TORCH_POOL, code_version, in_job, log_tenths, picture, records_table, rounded


def _label_rows(images: pl.DataFrame, dataset: str, label_key: str) -> pl.DataFrame:
    rows = images.filter(pl.col("label_key") == label_key)
    if rows.is_empty():
        # a label partition added by hand in the UI ("Add a partition") has no files behind it: labels come from the data
        raise Failure(description=f"dataset {dataset!r} has no images with label key {label_key!r} (labels: {sorted(images['label_key'].unique().to_list())}). "
                                  f"Labels come from the data, not from the partition list: add a folder (or manifest rows) of {label_key!r} images "
                                  f"and materialize {dataset}'s images; a partition added by hand has nothing to mine")
    return rows


def _typicality_metadata(scored: ScoredGroup, table: pl.DataFrame, ckpt_id: str, map_path, heatmaps_path) -> dict:
    result, opts = scored.result, scored.opts
    return rounded({
        "images": len(table),
        "mean_typicality": float(table["typicality"].mean()),
        "median_stderr": float(table["stderr"].median()),
        "n_samples": opts.n_samples,
        "sampling": opts.sampling,
        "precision": result.precision,
        "seconds": round(result.seconds, 2),
        "images_per_s": round(len(table) / max(result.seconds, 1e-9), 2),
        "checkpoint_id": ckpt_id,
        "maps": MetadataValue.path(str(map_path)),
        **_matrix_figures(scored),
        "heatmaps": picture(heatmaps(table, scored.maps), heatmaps_path, "typicality maps"),
    })


def _matrix_figures(scored: ScoredGroup) -> dict:
    if scored.matrix is None:
        return {}
    own = list(scored.matrix.labels).index(scored.key)
    return {
        "matrix_seconds": round(scored.matrix.seconds, 2),
        "matrix_evaluations": scored.matrix.forward_rows,
        "predicted_own_label_share": round(float((scored.matrix.predicted == own).float().mean()), 4),
    }


def build_typicality_assets(spec):
    ds = spec.name
    per_label = dataset_label_partitions(ds)
    typicality_version = code_version(spec.typicality.version())

    def out(name: str, description: str, **kw) -> AssetOut:
        return AssetOut(key=asset_key(ds, name), code_version=typicality_version, io_manager_key="lake_io", description=description, tags=in_job(LABEL_JOB, "typicality"), **kw)

    @multi_asset(
        name=f"{identifier(ds)}__image_typicality",
        partitions_def=per_label,
        ins={"images": AssetIn(key=asset_key(ds, "images"), partition_mapping=dataset_of_label),
             "checkpoint": AssetIn(key=asset_key(ds, "checkpoint"), partition_mapping=dataset_of_label)},
        outs={
            "image_typicality": out("image_typicality", "Typicality of each image of the label: mean of the per-pixel map, its standard error, N; maps kept as arrays in the lake.",
                                    kinds={"pytorch", "parquet"}),
            "label_matrix": out("label_matrix", "Typicality of the label's (held-out, or all) images under every label: which label the model "
                                "finds most typical of each image (the held-out accuracy).", is_required=False, kinds={"parquet"}),
            "typicality_history": out("typicality_history", "image_typicality of every checkpoint the label was ever scored with (one file per checkpoint), "
                                      "to compare checkpoints in SQL.", kinds={"parquet"}, metadata={"lake/keep_by": "checkpoint_id"}),
        },
        group_name=identifier(ds),
        pool=TORCH_POOL, op_tags=GPU_STEP_TAGS,
    )
    def image_typicality(context: AssetExecutionContext, diffmine: DiffmineResource, images: pl.DataFrame, checkpoint: pl.DataFrame):
        usage = StepUsage()
        dataset, label_key = split_partition_key(context.partition_key)
        opts = diffmine.dataset(dataset).typicality
        rows = _label_rows(images, dataset, label_key)
        ckpt = checkpoint.row(0, named=True)
        model = load_checkpoint(ckpt["path"])
        try:
            model.check_labels([label_key])
        except UnknownLabelError as exc:
            raise Failure(description=f"{dataset}/{label_key}: {exc}") from None
        # the dataset's noise set: every label partition is scored on the same draws
        pilot = images.filter(pl.col("label_key").is_in(model.labels))
        (scored,) = score_labels(model, rows, opts, pilot=pilot, matrix=opts.label_matrix, progress=log_tenths(context.log, "(image, noise) rows", "typicality"))
        map_path = save_array(diffmine.lake.files_dir(dataset, "typicality", label_key, f"maps-{ckpt['checkpoint_id']}.npy"), scored.replicate_maps.astype(np.float16))
        table = scored.table(ckpt["checkpoint_id"], map_path)
        meta = _typicality_metadata(scored, table, ckpt["checkpoint_id"], map_path, diffmine.lake.files_dir(dataset, "pictures", label_key, "heatmaps.png"))
        yield Output(table, output_name="image_typicality", metadata={**meta, **usage.figures()})
        if scored.matrix is not None:
            matrix = scored.matrix_table(ckpt["checkpoint_id"])
            yield Output(matrix, output_name="label_matrix", metadata={"images": matrix["image_id"].n_unique(), **_matrix_figures(scored)})
        yield Output(table.drop("path"), output_name="typicality_history", metadata={"checkpoint_id": ckpt["checkpoint_id"]})

    @asset(
        key=asset_key(ds, "patch_typicality"),
        code_version=code_version(spec.patches.version()),
        partitions_def=per_label,
        ins={"image_typicality": AssetIn(key=asset_key(ds, "image_typicality"))},
        io_manager_key="lake_io",
        group_name=identifier(ds),
        tags=in_job(LABEL_JOB, "typicality"),
        kinds={"parquet"},
        description="Windows of the label's images: the top K most typical (best non-overlapping per image), "
        "and as many random and least typical ones (column `selection`), with boxes in original pixels.",
    )
    def patch_typicality(context: AssetExecutionContext, diffmine: DiffmineResource, image_typicality: pl.DataFrame):
        usage = StepUsage()
        dataset, label_key = split_partition_key(context.partition_key)
        opts = diffmine.dataset(dataset).patches
        table, skipped = patch_table(image_typicality, load_array(image_typicality["map_path"][0]), opts)
        if table.is_empty():
            # an empty table would pass quietly into features and clusters
            largest = max(zip(image_typicality["width"], image_typicality["height"]), key=min, default=(0, 0))
            raise Failure(description=f"label {label_key!r}: no patch: all {len(image_typicality)} images are smaller than the {opts.window_px} px window "
                                      f"(patches.window_px; the largest is {largest[0]}x{largest[1]} px): set a window that fits the images")
        if skipped:
            context.log.warning(f"{skipped} images smaller than the {opts.window_px}px window were skipped")
        top = table.filter(pl.col("selection") == "top").sort("rank_in_label")
        best = [[r["rank_in_label"], r["image_id"], f"{r['x0']},{r['y0']},{r['x1']},{r['y1']}", round(r["typicality"], 5), round(r["stderr"], 5)] for r in top.head(10).iter_rows(named=True)]
        return Output(table, metadata={
            "top_patches": len(top),
            "skipped_small_images": skipped,
            "best": records_table(["rank", "image", "box", "typicality", "stderr"], best),
            "window_px": opts.window_px,
            "strips": picture(patch_strips(table), diffmine.lake.files_dir(dataset, "pictures", label_key, "strips.png"), "most typical, random, least typical"),
            **usage.figures(),
        })

    return [image_typicality, patch_typicality]
