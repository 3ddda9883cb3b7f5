"""From candidates to the `images` table: every file opened once, validated,
deduplicated by content, and given a stable id, label key and split."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import polars as pl

from ..images import ImageProblem, inspect_image
from ..labels import check_unique_keys
from .base import BOXES_SCHEMA, IMAGES_SCHEMA, Discovery, GroundTruth
from .boxes_file import match_boxes, read_boxes_file
from .registry import boxes_source, discover, ground_truth_records


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


CHUNK = 1024


def copy_into(store: Path, path: str, sha256: str) -> str:
    """A copy of the image in the lake, named by its content (kept when
    already there: a re-ingestion copies only new images)."""
    target = store / sha256[:2] / f"{sha256}{Path(path).suffix.lower()}"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)
    return str(target)


def membership_id(sha256: str, label: str) -> str:
    """The image_id of one (image, label) membership in a multi-label
    dataset: every row of the images table keeps a unique id, so every table
    keyed by image_id stays one row per membership; `sha256` names the image."""
    return hashlib.sha256(f"{sha256}\x1f{label}".encode()).hexdigest()[:16]


def ingest(
    dataset: str,
    spec,
    files_dir: Path,
    progress: Callable[[int, int, float], None] | None = None,
) -> IngestResult:
    """Open every candidate file once (a pool of threads fed in chunks, so
    the queue never holds the whole collection) and keep the usable ones.
    `progress(done, total, files_per_s)` is called after every chunk. No
    copy of an image is made: the table records where it lies."""
    found: Discovery = discover(spec, files_dir)
    opts = spec.options
    cands = found.candidates
    skipped = list(found.skipped)

    def check(path):
        try:
            return inspect_image(Path(path), max_pixels=opts.max_pixels, min_side=opts.min_side), None
        except ImageProblem as exc:
            return None, str(exc)
        except OSError as exc:
            return None, f"unreadable: {exc}"

    # a multi-label file is a candidate once per label: opened once
    groups: dict[Path, list] = {}
    for c in cands:
        groups.setdefault(c.path, []).append(c)
    paths = list(groups)
    seen: dict[str, str] = {}  # sha256 -> relpath of the first file kept with those bytes
    frames: list[pl.DataFrame] = []
    t0 = time.monotonic()
    # each chunk's rows become a columnar frame at once: no per-row Python
    # objects outlive their chunk, so memory grows by the table alone
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        for start in range(0, len(paths), CHUNK):
            chunk = paths[start : start + CHUNK]
            cols: dict[str, list] = {k: [] for k in IMAGES_SCHEMA if k not in ("dataset", "label_key")}
            for path, (info, problem) in zip(chunk, pool.map(check, chunk)):
                labels_kept: set[str] = set()
                for c in groups[path]:
                    if info is None:
                        skipped.append((c.relpath, problem))
                        continue
                    first = seen.setdefault(info.sha256, c.relpath)
                    if c.label in labels_kept:
                        skipped.append((c.relpath, f"duplicate: listed twice under label {c.label!r}"))
                        continue
                    # another file with the same bytes; or, where an image has one label, the same file again
                    if first != c.relpath or (labels_kept and not found.multi_label):
                        skipped.append((c.relpath, f"duplicate: same bytes as {first}"))
                        continue
                    labels_kept.add(c.label)
                    for k, v in (("label", c.label), ("image_id", membership_id(info.sha256, c.label) if found.multi_label else info.sha256[:16]),
                                 ("path", os.path.realpath(path)), ("relpath", c.relpath), ("width", info.width), ("height", info.height),
                                 ("mode", info.mode), ("format", info.format), ("bytes", info.bytes), ("sha256", info.sha256),
                                 ("split", _split(info.sha256, opts.val_fraction))):
                        cols[k].append(v)
            frames.append(pl.DataFrame(cols, schema={k: IMAGES_SCHEMA[k] for k in cols}))
            if progress:
                done = start + len(chunk)
                progress(done, len(paths), done / max(time.monotonic() - t0, 1e-9))
    del groups, seen
    kept = pl.concat(frames) if frames else pl.DataFrame(schema={k: IMAGES_SCHEMA[k] for k in IMAGES_SCHEMA if k not in ("dataset", "label_key")})
    found_labels = sorted(kept["label"].unique().to_list())
    keys = check_unique_keys(found_labels)
    empty = sorted(set(found.empty_labels) | ({c.label for c in cands} - set(found_labels)))
    images = kept.with_columns(pl.lit(dataset).alias("dataset"), pl.col("label").replace_strict(keys, return_dtype=pl.String).alias("label_key")).select(list(IMAGES_SCHEMA))
    if opts.copy_images and spec.kind != "builtin":
        images = images.with_columns(pl.Series("path", [copy_into(files_dir / "images", p, h) for p, h in zip(images["path"], images["sha256"])], dtype=pl.String))
    images = images.sort("label_key", "relpath")
    # A label must keep at least one training image, whatever the hash says.
    only_val = images.group_by("label").agg((pl.col("split") == "train").any().alias("has_train")).filter(~pl.col("has_train"))["label"]
    if len(only_val):
        first = images.filter(pl.col("label").is_in(only_val.implode())).group_by("label").agg(pl.col("image_id").first())["image_id"]
        images = images.with_columns(pl.when(pl.col("image_id").is_in(first.implode())).then(pl.lit("train")).otherwise(pl.col("split")).alias("split"))

    return IngestResult(images=images, skipped=skipped, empty_labels=empty)


def ground_truth(dataset: str, spec, images: pl.DataFrame) -> GroundTruth | None:
    """The known element boxes of the dataset's kept images with the boxes
    that could not be used (and why), or None when the dataset has no ground
    truth: the built-in generator's layout, or a boxes file."""
    records = ground_truth_records(spec)
    if records is not None:
        raw = pl.DataFrame(records, schema={"relpath": pl.String, "kind": pl.String, "role": pl.String, "element_label": pl.String, "x0": pl.Int32, "y0": pl.Int32, "x1": pl.Int32, "y1": pl.Int32})
        ids = images.select("relpath", "image_id", "label", "label_key")
        boxes = (
            raw.join(ids, on="relpath", how="inner")
            .with_columns(pl.lit(dataset).alias("dataset"))
            .select(list(BOXES_SCHEMA))
            .sort("label_key", "image_id", "x0", "y0")
        )
        return GroundTruth(boxes)
    source = boxes_source(spec)
    if source is None:
        return None
    path, aliases = source
    return match_boxes(dataset, read_boxes_file(path), images, path.name, aliases)


def ground_truth_boxes(dataset: str, spec, images: pl.DataFrame) -> pl.DataFrame | None:
    found = ground_truth(dataset, spec, images)
    return None if found is None else found.boxes
