"""Typicality of each label's images, and the patches mined from it."""

import time

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, AssetIn, Failure, MetadataValue, Output, asset

from ..mining.checkpoints import load_checkpoint
from ..mining.denoisers.base import UnknownLabelError
from ..mining.tables import image_typicality_table, load_array, patch_table, save_array
from ..mining.visuals import heatmaps, patch_strips
from ..mining.tensors import load_pixels, to_model_range
from ..mining.typicality import typicality_maps
from ..partitions import dataset_of_label, split_partition_key
from ..resources import DiffmineResource
from .metadata import md_table, picture
from .model import TORCH_POOL


def _label_rows(images: pl.DataFrame, dataset: str, label_key: str) -> pl.DataFrame:
    rows = images.filter(pl.col("label_key") == label_key)
    if rows.is_empty():
        raise Failure(description=f"dataset {dataset!r} has no images with label key {label_key!r} (labels: {sorted(images['label_key'].unique().to_list())})")
    return rows


def _tenths(log, what: str):
    """A progress callback that logs about ten times over a run."""
    started = time.monotonic()
    state = {"next": 0.1}

    def progress(done: int, total: int) -> None:
        if done >= state["next"] * total or done == total:
            elapsed = time.monotonic() - started
            eta = elapsed / max(done, 1) * (total - done)
            log.info(f"{done}/{total} {what}  {done / max(elapsed, 1e-9):.0f}/s  ETA {eta:.0f} s")
            state["next"] = done / total + 0.1

    return progress


def build_typicality_assets(label_partitions):
    @asset(
        partitions_def=label_partitions,
        ins={"images": AssetIn(partition_mapping=dataset_of_label), "checkpoint": AssetIn(partition_mapping=dataset_of_label)},
        io_manager_key="lake_io",
        group_name="typicality",
        pool=TORCH_POOL,
        kinds={"pytorch", "parquet"},
        description="Typicality of each image of the label: mean of the per-pixel map, its standard error, N; maps kept as arrays in the lake.",
    )
    def image_typicality(context: AssetExecutionContext, diffmine: DiffmineResource, images: pl.DataFrame, checkpoint: pl.DataFrame):
        dataset, label_key = split_partition_key(context.partition_key)
        spec = diffmine.dataset(dataset)
        opts = spec.typicality
        rows = _label_rows(images, dataset, label_key)
        ckpt = checkpoint.row(0, named=True)
        model = load_checkpoint(ckpt["path"])
        # own label first: the timestep pilot is run for it
        conditions = [label_key, *sorted(k for k in model.labels if k != label_key)] if opts.label_matrix else [label_key]
        try:
            model.check_labels([label_key])
        except UnknownLabelError as exc:
            raise Failure(description=f"{dataset}/{label_key}: {exc}") from None
        x0 = model.encode(to_model_range(load_pixels(rows["path"].to_list(), model.resolution)))
        result = typicality_maps(model, x0, conditions, opts, progress=_tenths(context.log, "(image, noise) rows"))
        own = conditions.index(label_key)
        map_path = diffmine.lake.files_dir(dataset, "typicality", label_key, f"maps-{ckpt['checkpoint_id']}.npy")
        save_array(map_path, result.replicate_maps[:, own].numpy().astype(np.float16))
        table, matrix = image_typicality_table(rows, label_key, result, opts, ckpt["checkpoint_id"], map_path, conditions)
        if matrix is not None:
            diffmine.lake.write_partition("label_matrix", matrix, dataset, label_key)
        # every checkpoint's scores are kept here, so two checkpoints can be compared in SQL
        diffmine.lake.write_partition("typicality_history", table.drop("path"), dataset, label_key, ckpt["checkpoint_id"])
        diffmine.catalog.ensure_views(["label_matrix", "typicality_history"])
        return Output(
            table,
            metadata={
                "images": len(table),
                "mean_typicality": float(table["typicality"].mean()),
                "median_stderr": float(table["stderr"].median()),
                "n_samples": opts.n_samples,
                "sampling": opts.sampling,
                "precision": result.precision,
                "seconds": round(result.seconds, 2),
                "images_per_s": round(len(table) / max(result.seconds, 1e-9), 2),
                "checkpoint_id": ckpt["checkpoint_id"],
                "maps": MetadataValue.path(str(map_path)),
                "heatmaps": picture(heatmaps(table, result.maps[:, own].numpy()), diffmine.lake.files_dir(dataset, "pictures", label_key, "heatmaps.png"), "typicality maps"),
            },
        )

    @asset(
        partitions_def=label_partitions,
        ins={"image_typicality": AssetIn()},
        io_manager_key="lake_io",
        group_name="typicality",
        kinds={"parquet"},
        description="Windows of the label's images: the top K most typical (best non-overlapping per image), "
        "and as many random and least typical ones (column `selection`), with boxes in original pixels.",
    )
    def patch_typicality(context: AssetExecutionContext, diffmine: DiffmineResource, image_typicality: pl.DataFrame):
        dataset, label_key = split_partition_key(context.partition_key)
        opts = diffmine.dataset(dataset).patches
        maps = load_array(image_typicality["map_path"][0])
        table, skipped = patch_table(image_typicality, maps, opts)
        if skipped:
            context.log.warning(f"{skipped} images smaller than the {opts.window_px}px window were skipped")
        top = table.filter(pl.col("selection") == "top").sort("rank_in_label")
        return Output(
            table,
            metadata={
                "top_patches": len(top),
                "skipped_small_images": skipped,
                "best": md_table(["rank", "image", "box", "typicality", "stderr"], [[r["rank_in_label"], r["image_id"], f"{r['x0']},{r['y0']},{r['x1']},{r['y1']}", f"{r['typicality']:.4f}", f"{r['stderr']:.4f}"] for r in top.head(10).iter_rows(named=True)]),
                "window_px": opts.window_px,
                "strips": picture(patch_strips(table), diffmine.lake.files_dir(dataset, "pictures", label_key, "strips.png"), "most typical, random, least typical"),
            },
        )

    return [image_typicality, patch_typicality]
