"""The dataset's images (and, where it has them, ground-truth boxes)."""

import time

import polars as pl
from dagster import AssetExecutionContext, AssetIn, DataVersion, Failure, MetadataValue, Output, asset

from ..mining.datasets.base import DatasetError, GroundTruth
from ..mining.datasets.ingest import IngestResult, ground_truth, ingest
from ..mining.datasets.registry import boxes_source, label_fingerprints
from ..mining.report.pictures import contact_sheet, image_rows
from ..partitions import asset_key, DATASET_JOB, dataset_partitions, identifier, label_partitions_name
from ..progress import eta, report
from ..resources import DiffmineResource
from .common import code_version, in_job, picture, records_table

PREVIEW_PER_LABEL = 8


def _boxes_stamp(spec) -> str:
    """The boxes file's path, size and modification time: an edited file
    shows ground_truth_boxes stale."""
    found = boxes_source(spec)
    if found is None or not found[0].exists():
        return ""
    st = found[0].stat()
    return f"{found[0]}:{st.st_size}:{st.st_mtime_ns}"


def _progress(context):
    """Each chunk of checked files: a line in the run's log (at most every
    10 s, and the last) and the terminal's bar."""
    last = [0.0]

    def show(done: int, total: int, rate: float) -> None:
        detail = f"{rate:.0f} files/s, ETA {eta((total - done) / max(rate, 1e-9))}"
        report("ingest", done, total, detail)
        now = time.monotonic()
        if done == total or now - last[0] >= 10:
            last[0] = now
            context.log.info(f"checked {done}/{total} files ({detail})")

    return show


def _images_metadata(spec, result: IngestResult, new_keys: list[str], preview_path) -> dict:
    df = result.images
    labels = df.group_by("label", "label_key").agg(pl.len().alias("images"), (pl.col("split") == "val").sum().alias("val")).sort("label_key")
    sample = df.group_by("label_key", maintain_order=True).head(PREVIEW_PER_LABEL)
    groups = [(f"{lbl}\n({n} images)", sample.filter(pl.col("label") == lbl)["path"].to_list()) for lbl, _k, n, _v in labels.iter_rows()]
    prints = label_fingerprints(spec) if result.empty_labels else {}
    return {
        "images": len(df),
        "labels": len(labels),
        "per_label": records_table(["label", "key", "images", "val"], [list(r) for r in labels.iter_rows()]),
        "skipped": len(result.skipped),
        "skipped_by_reason": MetadataValue.json(result.skip_counts),
        "skipped_files": records_table(["file", "reason"], [list(s) for s in result.skipped]) if result.skipped else MetadataValue.text("none"),
        "empty_labels": MetadataValue.json(result.empty_labels),
        # read by the new_labels sensor: not asked for again until these files change
        "unusable_labels": MetadataValue.json({lbl: prints.get(lbl, "") for lbl in result.empty_labels}),
        "new_label_partitions": MetadataValue.json(new_keys),
        "data_version": result.data_version,
        "preview": picture(contact_sheet(image_rows(groups[:12])), preview_path),
    }


def _boxes_metadata(found: GroundTruth) -> dict:
    boxes = found.boxes
    per_kind = boxes.group_by("role", "kind").agg(pl.len().alias("boxes"), pl.col("image_id").n_unique().alias("images")).sort("role", "kind")
    return {
        "boxes": len(boxes),
        "images_with_boxes": boxes["image_id"].n_unique(),
        "per_kind": records_table(["role", "kind", "boxes", "images"], [list(r) for r in per_kind.iter_rows()]),
        # every box of the file that is not stored (or was clipped), by reason: none is dropped silently
        "box_problems": len(found.problems),
        "box_problems_by_reason": MetadataValue.json(found.problem_counts),
        "box_problem_list": records_table(["file", "reason"], [list(p) for p in found.problems[:500]]) if found.problems else MetadataValue.text("none"),
    }


def build_ingest_assets(spec):
    ds = spec.name
    source_version = code_version(spec.kind, getattr(spec, "path", ""), spec.options.version())

    @asset(
        key=asset_key(ds, "images"),
        partitions_def=dataset_partitions(ds),
        code_version=source_version,
        io_manager_key="lake_io",
        group_name=identifier(ds),
        tags=in_job(DATASET_JOB, "dataset"),
        kinds={"polars", "parquet"},
        description="One row per usable image of the dataset: label, label key, id, path, size, sha256, split. "
        "Registers every label found as a partition of the label dimension.",
    )
    def images(context: AssetExecutionContext, diffmine: DiffmineResource) -> Output[pl.DataFrame]:
        name = context.partition_key
        try:
            result = ingest(name, diffmine.dataset(name), diffmine.lake.files_dir(name), progress=_progress(context))
        except (DatasetError, ValueError) as exc:
            raise Failure(description=str(exc)) from None
        for rel, reason in result.skipped:
            context.log.warning(f"skipped {rel}: {reason}")
        if result.images.is_empty():
            raise Failure(description=f"dataset {name!r}: no usable image ({len(result.skipped)} skipped: {result.skip_counts}; empty labels: {result.empty_labels})")
        known = set(context.instance.get_dynamic_partitions(label_partitions_name(name)))
        new_keys = [k for k in sorted(result.images["label_key"].unique().to_list()) if k not in known]
        if new_keys:
            context.instance.add_dynamic_partitions(label_partitions_name(name), new_keys)
        metadata = _images_metadata(diffmine.dataset(name), result, new_keys, diffmine.lake.files_dir(name, "pictures", "images_preview.png"))
        return Output(result.images, metadata=metadata, data_version=DataVersion(result.data_version))

    @asset(
        key=asset_key(ds, "ground_truth_boxes"),
        partitions_def=dataset_partitions(ds),
        code_version=code_version(source_version, _boxes_stamp(spec)),
        io_manager_key="lake_io",
        group_name=identifier(ds),
        tags=in_job(DATASET_JOB, "dataset"),
        ins={"images": AssetIn(key=asset_key(ds, "images"))},
        output_required=False,
        kinds={"polars", "parquet"},
        description="Known boxes of visual elements (kind, role, owning label), for datasets that have ground truth. "
        "Not materialized for datasets without any.",
    )
    def ground_truth_boxes(context: AssetExecutionContext, diffmine: DiffmineResource, images: pl.DataFrame):
        name = context.partition_key
        try:
            found = ground_truth(name, diffmine.dataset(name), images)
        except (DatasetError, ValueError) as exc:
            raise Failure(description=str(exc)) from None
        if found is None:
            context.log.info(f"dataset {name!r} has no ground truth; nothing to store")
            return
        for file, reason in found.problems:
            context.log.warning(f"box of {file}: {reason}")
        yield Output(found.boxes, metadata=_boxes_metadata(found))

    return [images, ground_truth_boxes]
