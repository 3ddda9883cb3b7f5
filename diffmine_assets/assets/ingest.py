"""The dataset's images (and, where it has them, ground-truth boxes)."""


import time

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetIn,
    DataVersion,
    Failure,
    MetadataValue,
    Output,
    asset,
)

from ..mining.datasets.ingest import ground_truth
from ..mining.datasets.ingest import ingest
from ..mining.datasets.sources import DatasetError, label_fingerprints
from ..mining.pictures import contact_sheet, image_rows
from ..progress import eta, report
from ..partitions import asset_key, dataset_partitions, label_partitions_name
from ..resources import DiffmineResource
from .metadata import picture, records_table
from .versions import code_versions

PREVIEW_PER_LABEL = 8


def _fingerprints_of(spec, labels: list[str]) -> dict[str, str]:
    if not labels:
        return {}
    prints = label_fingerprints(spec)
    return {lbl: prints.get(lbl, "") for lbl in labels}


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


def build_ingest_assets(spec):
    ds = spec.name
    versions = code_versions(spec)

    @asset(
        key=asset_key(ds, "images"),
        partitions_def=dataset_partitions(ds),
        code_version=versions["images"],
        io_manager_key="lake_io",
        group_name="dataset",
        kinds={"polars", "parquet"},
        description="One row per usable image of the dataset: label, label key, id, path, size, sha256, split. "
        "Registers every label found as a partition of the label dimension.",
    )
    def images(context: AssetExecutionContext, diffmine: DiffmineResource) -> Output[pl.DataFrame]:
        name = context.partition_key
        spec = diffmine.dataset(name)
        files_dir = diffmine.lake.files_dir(name)
        try:
            result = ingest(name, spec, files_dir, progress=_progress(context))
        except (DatasetError, ValueError) as exc:
            raise Failure(description=str(exc)) from None
        df = result.images
        for rel, reason in result.skipped:
            context.log.warning(f"skipped {rel}: {reason}")
        if df.is_empty():
            raise Failure(
                description=f"dataset {name!r}: no usable image "
                f"({len(result.skipped)} skipped: {result.skip_counts}; empty labels: {result.empty_labels})"
            )
        keys = sorted(df["label_key"].unique().to_list())
        known = set(context.instance.get_dynamic_partitions(label_partitions_name(name)))
        new_keys = [k for k in keys if k not in known]
        if new_keys:
            context.instance.add_dynamic_partitions(label_partitions_name(name), new_keys)
        labels = df.group_by("label", "label_key").agg(pl.len().alias("images"), (pl.col("split") == "val").sum().alias("val")).sort("label_key")
        sample = df.group_by("label_key", maintain_order=True).head(PREVIEW_PER_LABEL)
        groups = [(f"{lbl}\n({n} images)", sample.filter(pl.col("label") == lbl)["path"].to_list()) for lbl, _k, n, _v in labels.iter_rows()]
        metadata = {
            "images": len(df),
            "labels": len(labels),
            "per_label": records_table(["label", "key", "images", "val"], [list(r) for r in labels.iter_rows()]),
            "skipped": len(result.skipped),
            "skipped_by_reason": MetadataValue.json(result.skip_counts),
            "skipped_files": records_table(["file", "reason"], [list(s) for s in result.skipped]) if result.skipped else MetadataValue.text("none"),
            "empty_labels": MetadataValue.json(result.empty_labels),
            # read by the new_labels sensor: not asked for again until these files change
            "unusable_labels": MetadataValue.json(_fingerprints_of(spec, result.empty_labels)),
            "new_label_partitions": MetadataValue.json(new_keys),
            "data_version": result.data_version,
            "preview": picture(contact_sheet(image_rows(groups[:12])), diffmine.lake.files_dir(name, "pictures", "images_preview.png")),
        }
        return Output(df, metadata=metadata, data_version=DataVersion(result.data_version))

    @asset(
        key=asset_key(ds, "ground_truth_boxes"),
        partitions_def=dataset_partitions(ds),
        code_version=versions["ground_truth_boxes"],
        io_manager_key="lake_io",
        group_name="dataset",
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
        boxes = found.boxes
        for file, reason in found.problems:
            context.log.warning(f"box of {file}: {reason}")
        per_kind = boxes.group_by("role", "kind").agg(pl.len().alias("boxes"), pl.col("image_id").n_unique().alias("images")).sort("role", "kind")
        yield Output(
            boxes,
            metadata={
                "boxes": len(boxes),
                "images_with_boxes": boxes["image_id"].n_unique(),
                "per_kind": records_table(["role", "kind", "boxes", "images"], [list(r) for r in per_kind.iter_rows()]),
                # every box of the file that is not stored (or was clipped), by reason: none is dropped silently
                "box_problems": len(found.problems),
                "box_problems_by_reason": MetadataValue.json(found.problem_counts),
                "box_problem_list": records_table(["file", "reason"], [list(p) for p in found.problems[:500]]) if found.problems else MetadataValue.text("none"),
            },
        )

    return [images, ground_truth_boxes]
