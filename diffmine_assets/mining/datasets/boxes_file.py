"""Ground truth from a file: boxes (file, label, x, y, w, h in the original
image's pixels) matched to the ingested images.

ChestX-ray14's own `BBox_List_2017.csv` is accepted as it ships: its header
`Image Index,Finding Label,Bbox [x,y,w,h]` splits into the columns
`Bbox [x`, `y`, `w`, `h]`, and trailing empty columns follow. Every box that
cannot be used is counted with its reason, never dropped silently: a file
that is not among the images, a label the dataset does not have, a label
the image does not carry, a box outside its image (one partly outside is
clipped, and counted as clipped).
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from .base import BOXES_SCHEMA, DatasetError, GroundTruth

_ALIASES = {
    "file": ("file", "path", "relpath", "image", "filename", "Image Index"),
    "label": ("label", "finding", "Finding Label"),
    "x": ("x", "Bbox [x", "Bbox [x,y,w,h]"),
    "y": ("y",),
    "w": ("w", "width"),
    "h": ("h", "h]", "height"),
}


def read_boxes_file(path: Path) -> pl.DataFrame:
    """The file's boxes as columns file, label, x, y, w, h (strings for the
    first two, floats for the rest), whatever its column names."""
    if not path.exists():
        raise DatasetError(f"boxes file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            raw = pl.read_parquet(path)
        elif suffix in (".csv", ".tsv"):
            raw = pl.read_csv(path, separator="\t" if suffix == ".tsv" else ",", infer_schema_length=0, truncate_ragged_lines=True)
        else:
            raise DatasetError(f"boxes file {path}: unsupported file type {suffix!r} (use .csv, .tsv or .parquet)")
    except DatasetError:
        raise
    except Exception as exc:  # polars raises several types; all mean "unreadable"
        raise DatasetError(f"boxes file {path}: cannot be read: {exc}") from None
    picked = {}
    for want, names in _ALIASES.items():
        col = next((c for c in raw.columns if c in names or c.strip() in names), None)
        if col is None:
            raise DatasetError(f"boxes file {path}: no column for {want!r} (accepted: {list(names)}); columns are {raw.columns}")
        picked[want] = col
    out = raw.select(
        pl.col(picked["file"]).cast(pl.String).alias("file"),
        pl.col(picked["label"]).cast(pl.String).alias("label"),
        *[pl.col(picked[c]).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False).alias(c) for c in ("x", "y", "w", "h")],
    )
    return out


def match_boxes(dataset: str, raw: pl.DataFrame, images: pl.DataFrame, source: str, label_aliases: dict[str, str] | None = None) -> GroundTruth:
    """Boxes of `raw` on the kept images, in the images table's terms
    (image_id, label_key, x0..y1 clipped to the image): one row per box and
    membership of its label. Files match by relative path, else by file name
    when exactly one image has it."""
    aliases = label_aliases or {}
    by_rel: dict[str, list[dict]] = {}
    by_name: dict[str, set[str]] = {}
    for r in images.select("relpath", "image_id", "label", "label_key", "width", "height").iter_rows(named=True):
        by_rel.setdefault(r["relpath"], []).append(r)
        by_name.setdefault(Path(r["relpath"]).name, set()).add(r["relpath"])
    labels = set(images["label"].unique().to_list())
    rows, problems = [], []
    for n, b in enumerate(raw.iter_rows(named=True), 1):
        file = (b["file"] or "").strip()
        where = f"{source} row {n}"
        rel = file if file in by_rel else None
        if rel is None:
            names = by_name.get(Path(file).name, set())
            if len(names) > 1:
                problems.append((file, f"ambiguous file: {where}: {len(names)} images are named {Path(file).name}"))
                continue
            rel = next(iter(names), None)
        if rel is None:
            problems.append((file or where, f"unknown file: {where}: not among the dataset's kept images"))
            continue
        label = (b["label"] or "").strip()
        label = aliases.get(label, label)
        if label not in labels:
            problems.append((file, f"unknown label: {where}: {label!r} is not a label of the dataset"))
            continue
        member = next((m for m in by_rel[rel] if m["label"] == label), None)
        if member is None:
            problems.append((file, f"label not on image: {where}: the image is not labelled {label!r}"))
            continue
        x, y, w, h = b["x"], b["y"], b["w"], b["h"]
        if any(v is None or not math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
            problems.append((file, f"bad box: {where}: x, y, w, h = {x}, {y}, {w}, {h}"))
            continue
        x0, y0, x1, y1 = math.floor(x), math.floor(y), math.ceil(x + w), math.ceil(y + h)
        W, H = member["width"], member["height"]
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
        if cx1 <= cx0 or cy1 <= cy0:
            problems.append((file, f"outside the image: {where}: box ({x0}, {y0})-({x1}, {y1}) on a {W}x{H} image"))
            continue
        if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
            problems.append((file, f"clipped: {where}: box ({x0}, {y0})-({x1}, {y1}) cut to the {W}x{H} image (kept)"))
        rows.append({"dataset": dataset, "label": label, "label_key": member["label_key"], "image_id": member["image_id"], "kind": label,
                     "role": "label", "element_label": label, "x0": cx0, "y0": cy0, "x1": cx1, "y1": cy1})
    boxes = pl.DataFrame(rows, schema=BOXES_SCHEMA).sort("label_key", "image_id", "x0", "y0")
    return GroundTruth(boxes, problems)
