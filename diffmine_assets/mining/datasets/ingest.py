"""From candidates to the `images` table: every file opened once, validated,
deduplicated by content, and given a stable id, label key and split."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import polars as pl

from ..labels import check_unique_keys
from .images import ImageProblem, inspect_image
from .sources import Discovery, discover, ground_truth_records

IMAGES_SCHEMA = {
    "dataset": pl.String,
    "label": pl.String,
    "label_key": pl.String,
    "image_id": pl.String,
    "path": pl.String,
    "relpath": pl.String,
    "width": pl.Int32,
    "height": pl.Int32,
    "mode": pl.String,
    "format": pl.String,
    "bytes": pl.Int64,
    "sha256": pl.String,
    "split": pl.String,
}

BOXES_SCHEMA = {
    "dataset": pl.String,
    "label": pl.String,
    "label_key": pl.String,
    "image_id": pl.String,
    "kind": pl.String,
    "role": pl.String,
    "element_label": pl.String,
    "x0": pl.Int32,
    "y0": pl.Int32,
    "x1": pl.Int32,
    "y1": pl.Int32,
}


@dataclass
class IngestResult:
    images: pl.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)
    empty_labels: list[str] = field(default_factory=list)

    @property
    def skip_counts(self) -> dict[str, int]:
        # Every reason starts with its category ("too small: 8x8 ...").
        return dict(Counter(reason.split(":")[0] for _, reason in self.skipped))

    @property
    def label_counts(self) -> dict[str, int]:
        if self.images.is_empty():
            return {}
        counts = self.images.group_by("label").len().sort("label")
        return dict(zip(counts["label"].to_list(), counts["len"].to_list()))

    @property
    def data_version(self) -> str:
        return data_version(self.images)


def data_version(images: pl.DataFrame) -> str:
    """Changes exactly when the set of (image content, label, split) changes."""
    h = hashlib.sha256()
    for row in images.select("sha256", "label", "split").sort("sha256").iter_rows():
        h.update("\x1f".join(row).encode())
        h.update(b"\x1e")
    return h.hexdigest()[:16]


def _split(sha256: str, val_fraction: float) -> str:
    # By content, so a file keeps its split when others are added or renamed.
    return "val" if int(sha256[:8], 16) / 2**32 < val_fraction else "train"


def ingest(
    dataset: str,
    spec,
    files_dir: Path,
    progress: Callable[[int, int], None] | None = None,
) -> IngestResult:
    found: Discovery = discover(spec, files_dir)
    opts = spec.options
    cands = found.candidates
    skipped = list(found.skipped)

    def check(c):
        try:
            return inspect_image(c.path, max_pixels=opts.max_pixels, min_side=opts.min_side), None
        except ImageProblem as exc:
            return None, str(exc)
        except OSError as exc:
            return None, f"unreadable: {exc}"

    infos = []
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        for i, res in enumerate(pool.map(check, cands)):
            infos.append(res)
            if progress and (i + 1) % 500 == 0:
                progress(i + 1, len(cands))

    rows, seen = [], {}
    for c, (info, problem) in zip(cands, infos):
        if info is None:
            skipped.append((c.relpath, problem))
            continue
        if info.sha256 in seen:
            skipped.append((c.relpath, f"duplicate: same bytes as {seen[info.sha256]}"))
            continue
        seen[info.sha256] = c.relpath
        rows.append((c, info))

    keys = check_unique_keys(sorted({c.label for c, _ in rows}))
    by_label = Counter(c.label for c, _ in rows)
    empty = sorted(set(found.empty_labels) | ({c.label for c in cands} - set(by_label)))
    records = []
    for c, info in rows:
        records.append(
            {
                "dataset": dataset,
                "label": c.label,
                "label_key": keys[c.label],
                "image_id": info.sha256[:16],
                "path": str(c.path.resolve()),
                "relpath": c.relpath,
                "width": info.width,
                "height": info.height,
                "mode": info.mode,
                "format": info.format,
                "bytes": info.bytes,
                "sha256": info.sha256,
                "split": _split(info.sha256, opts.val_fraction),
            }
        )
    images = pl.DataFrame(records, schema=IMAGES_SCHEMA).sort("label_key", "relpath")
    # A label must keep at least one training image, whatever the hash says.
    only_val = images.group_by("label").agg((pl.col("split") == "train").any().alias("has_train")).filter(~pl.col("has_train"))["label"]
    if len(only_val):
        first = images.filter(pl.col("label").is_in(only_val.implode())).group_by("label").agg(pl.col("image_id").first())["image_id"]
        images = images.with_columns(pl.when(pl.col("image_id").is_in(first.implode())).then(pl.lit("train")).otherwise(pl.col("split")).alias("split"))

    return IngestResult(images=images, skipped=skipped, empty_labels=empty)


def ground_truth_boxes(dataset: str, spec, images: pl.DataFrame) -> pl.DataFrame | None:
    """The known element boxes of the dataset's kept images, or None when the
    dataset's kind has no ground truth."""
    records = ground_truth_records(spec)
    if records is None:
        return None
    raw = pl.DataFrame(records, schema={"relpath": pl.String, "kind": pl.String, "role": pl.String, "element_label": pl.String, "x0": pl.Int32, "y0": pl.Int32, "x1": pl.Int32, "y1": pl.Int32})
    ids = images.select("relpath", "image_id", "label", "label_key")
    return (
        raw.join(ids, on="relpath", how="inner")
        .with_columns(pl.lit(dataset).alias("dataset"))
        .select(list(BOXES_SCHEMA))
        .sort("label_key", "image_id", "x0", "y0")
    )
