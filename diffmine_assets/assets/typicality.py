"""Typicality of each label's images, and the patches mined from it."""

import time

import numpy as np
import polars as pl
from dagster import AssetExecutionContext, AssetIn, AssetOut, Failure, MetadataValue, Output, asset, multi_asset

from ..mining.checkpoints import load_checkpoint
from ..mining.denoisers.base import UnknownLabelError
from ..mining.tables import image_typicality_table, label_matrix_table, load_array, patch_table, save_array
from ..mining.visuals import heatmaps, patch_strips
from ..mining.tensors import load_pixels, to_model_range
from ..mining.typicality import dataset_noise, label_scores, pilot_rows, typicality_maps
from ..partitions import asset_key, dataset_label_partitions, dataset_of_label, identifier, split_partition_key
from ..progress import eta as fmt_eta, report
from ..resources import DiffmineResource
from .metadata import picture, records_table
from .model import GPU_STEP_TAGS, TORCH_POOL
from .versions import code_versions


def _label_rows(images: pl.DataFrame, dataset: str, label_key: str) -> pl.DataFrame:
    rows = images.filter(pl.col("label_key") == label_key)
    if rows.is_empty():
        raise Failure(description=f"dataset {dataset!r} has no images with label key {label_key!r} (labels: {sorted(images['label_key'].unique().to_list())})")
    return rows


def _tenths(log, what: str, stage: str = "typicality"):
    """A progress callback that logs about ten times over a run (and feeds
    the terminal's bar every time)."""
    started = time.monotonic()
    state = {"next": 0.1}

    def progress(done: int, total: int) -> None:
        elapsed = time.monotonic() - started
        report(stage, done, total, f"{done / max(elapsed, 1e-9):.0f} rows/s  ETA {fmt_eta(elapsed / max(done, 1) * (total - done))}")
        if done >= state["next"] * total or done == total:
            elapsed = time.monotonic() - started
            eta = elapsed / max(done, 1) * (total - done)
            log.info(f"{done}/{total} {what}  {done / max(elapsed, 1e-9):.0f}/s  ETA {eta:.0f} s")
            state["next"] = done / total + 0.1

    return progress


def build_typicality_assets(spec):
    ds = spec.name
    versions = code_versions(spec)
    per_label = dataset_label_partitions(ds)

    def out(name: str, description: str, **kw) -> AssetOut:
        return AssetOut(key=asset_key(ds, name), code_version=versions[name], io_manager_key="lake_io", description=description, **kw)

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
        group_name="typicality",
        pool=TORCH_POOL, op_tags=GPU_STEP_TAGS,
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
            matrix = label_matrix_table(rows[covered.tolist()], label_key, scores, ckpt["checkpoint_id"])
            own_index = model.labels.index(label_key)
            matrix_figures = {
                "matrix_seconds": round(scores.seconds, 2),
                "matrix_evaluations": scores.forward_rows,
                "predicted_own_label_share": round(float((scores.predicted == own_index).float().mean()), 4),
            }
        yield Output(
            table,
            output_name="image_typicality",
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
        if matrix_figures:
            yield Output(matrix, output_name="label_matrix", metadata={"images": matrix["image_id"].n_unique(), **matrix_figures})
        yield Output(table.drop("path"), output_name="typicality_history", metadata={"checkpoint_id": ckpt["checkpoint_id"]})

    @asset(
        key=asset_key(ds, "patch_typicality"),
        code_version=versions["patch_typicality"],
        partitions_def=per_label,
        ins={"image_typicality": AssetIn(key=asset_key(ds, "image_typicality"))},
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
                "best": records_table(["rank", "image", "box", "typicality", "stderr"], [[r["rank_in_label"], r["image_id"], f"{r['x0']},{r['y0']},{r['x1']},{r['y1']}", round(r["typicality"], 5), round(r["stderr"], 5)] for r in top.head(10).iter_rows(named=True)]),
                "window_px": opts.window_px,
                "strips": picture(patch_strips(table), diffmine.lake.files_dir(dataset, "pictures", label_key, "strips.png"), "most typical, random, least typical"),
            },
        )

    return [image_typicality, patch_typicality]
