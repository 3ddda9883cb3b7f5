"""Where a dataset's files and labels come from: one reader per kind of
dataset (SOURCES), and what the graph asks of any of them (candidates, the
labels found now and their fingerprints, the boxes file it declares).

A source turns a declared dataset into candidates (file, label) and the
problems it met before any image was opened; ingestion (ingest.py) then
validates every candidate the same way, whatever its kind. A new kind of
dataset is its options in config/datasets.py and one line here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

from . import builtin, paper_formats
from .base import DatasetError, Discovery
from .folders import discover_folder, discover_manifest, derive_label, is_label_folder, label_files, read_manifest
from ..config.datasets import LabelRule

SOURCES: dict[str, Callable[..., Discovery]] = {
    "builtin": builtin.discover,
    "folder": discover_folder,
    "manifest": discover_manifest,
    "cardb": paper_formats.discover_cardb,
    "ftt": paper_formats.discover_ftt,
    "g3": paper_formats.discover_g3,
    "places365": paper_formats.discover_places365,
    "chestxray14": paper_formats.discover_chestxray14,
}


def discover(spec, files_dir: Path) -> Discovery:
    return SOURCES[spec.kind](spec, files_dir)


def ground_truth_records(spec) -> list[dict] | None:
    """Element boxes keyed by relative path, for the built-in kind (its
    layout recomputed from the seed, no pixel drawn)."""
    if spec.kind == "builtin":
        return builtin.boxes(builtin.layout(spec.options))
    return None


def boxes_source(spec) -> tuple[Path, dict[str, str]] | None:
    """The file of boxes a dataset declares (or ships), with the label
    aliases of its format; None when it has none."""
    if getattr(spec, "boxes", None) is not None:
        return spec.boxes, {}
    if spec.kind == "chestxray14" and spec.options.boxes_file:
        path = spec.path / spec.options.boxes_file
        return (path, paper_formats.CHESTXRAY14_LABELS) if path.exists() else None
    return None


def discover_labels(spec) -> list[str]:
    """The labels a dataset holds now, found cheaply (folder names, a manifest's
    label column; no image is opened): what a sensor polls for new labels.
    Labels whose folders hold no file that ingestion would consider are left out."""
    return sorted(label_fingerprints(spec))


def label_fingerprints(spec) -> dict[str, str]:
    """Each label found now, with a cheap fingerprint of its files (names,
    sizes, modification times; nothing opened) where the kind has files per
    label: a label ingestion found unusable is asked for again only when its
    files change."""
    if spec.kind == "builtin":
        return {lbl: "" for lbl in builtin.labels(spec.options)}
    if spec.kind == "folder":
        root = spec.path
        if not root.is_dir():
            return {}
        found = {}
        for entry in sorted(root.iterdir()):
            if not is_label_folder(entry):
                continue
            files = label_files(root, entry)
            if files:
                listing = "\n".join(f"{p.relative_to(root).as_posix()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
                found[entry.name] = hashlib.sha1(listing.encode()).hexdigest()[:12]
        return found
    if spec.kind == "manifest":
        if not spec.path.exists():
            return {}
        opts = spec.options
        df = read_manifest(spec.path)
        col = opts.label_from.column if opts.label_from else opts.label_column
        if col not in df.columns:
            return {}
        rule = opts.label_from or LabelRule(column=col, rule="value")
        labels = set()
        for v in df[col].unique().to_list():
            try:
                labels.add(derive_label(v, rule))
            except ValueError:
                continue
        stamp = str(spec.path.stat().st_mtime_ns)
        return {lbl: stamp for lbl in sorted(labels)}
    # the paper's collections: their metadata read (no image opened), each
    # label fingerprinted by the files it lists
    try:
        found = discover(spec, Path("."))
    except DatasetError:
        return {}
    listing: dict[str, list[str]] = {}
    for c in found.candidates:
        listing.setdefault(c.label, []).append(c.relpath)
    return {lbl: hashlib.sha1("\n".join(sorted(v)).encode()).hexdigest()[:12] for lbl, v in sorted(listing.items())}
