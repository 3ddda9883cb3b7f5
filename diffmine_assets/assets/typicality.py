"""Typicality of each label's images, and the patches mined from it."""

import time

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, AssetIn, Failure, MetadataValue, Output, asset

from ..mining.checkpoints import load_checkpoint
from ..mining.denoisers.base import UnknownLabelError
from ..mining.tables import image_typicality_table, label_matrix_table, load_array, patch_table, save_array
from ..mining.visuals import heatmaps, patch_strips
from ..mining.tensors import load_pixels, to_model_range
from ..mining.typicality import dataset_noise, label_scores, pilot_rows, typicality_maps
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
        try:
            model.check_labels([label_key])
        except UnknownLabelError as exc:
            raise Failure(description=f"{dataset}/{label_key}: {exc}") from None
        x0 = model.encode(to_model_range(load_pixels(rows["path"].to_list(), model.resolution)))
        pilot = pilot_rows(images.filter(pl.col("label_key").is_in(model.labels)))
        noise = dataset_noise(model, model.encode(to_model_range(load_pixels(pilot["path"].to_list(), model.resolution))), pilot["label_key"].to_list(), opts)
        result = typicality_maps(model, x0, [label_key], opts, noise=noise, progress=_tenths(context.log, "(image, noise) rows"))
        map_path = diffmine.lake.files_dir(dataset, "typicality", label_key, f"maps-{ckpt['checkpoint_id']}.npy")
        save_array(map_path, result.replicate_maps[:, 0].numpy().astype(np.float16))
        table = image_typicality_table(rows, label_key, result, opts, ckpt["checkpoint_id"], map_path)
        matrix_figures = {}
        covered = np.arange(len(rows)) if opts.label_matrix == "all" else (rows["split"] == "val").to_numpy().nonzero()[0]
        if opts.label_matrix != "none" and len(model.labels) > 1 and len(covered):
            scores = label_scores(model, x0[covered], result.take(covered), label_key, list(model.labels), opts)
            diffmine.lake.write_partition("label_matrix", label_matrix_table(rows[covered.tolist()], label_key, scores, ckpt["checkpoint_id"]), dataset, label_key)
            own_index = model.labels.index(label_key)
            matrix_figures = {
                "matrix_seconds": round(scores.seconds, 2),
                "matrix_evaluations": scores.forward_rows,
                "predicted_own_label_share": round(float((scores.predicted == own_index).float().mean()), 4),
            }
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
                **matrix_figures,
                "heatmaps": picture(heatmaps(table, result.maps[:, 0].numpy()), diffmine.lake.files_dir(dataset, "pictures", label_key, "heatmaps.png"), "typicality maps"),
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
