"""Where a dataset's files and labels come from, one function per kind.

A source turns a declared dataset into candidates (file, label) and the
problems it met before any image was opened. Ingestion (ingest.py) then
validates every candidate the same way, whatever its kind. The paper's own
formats (CarDB, FTT, G^3, Places365, ChestX-ray14) live in collections.py.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import polars as pl

from . import builtin
from .images import IGNORED_NAMES
from .spec import BuiltinDataset, FolderDataset, ManifestDataset, LabelRule


class DatasetError(ValueError):
    """The dataset as a whole cannot be read; the message names the path."""


@dataclass(frozen=True, slots=True)
class Candidate:
    # a str where a source lists many files (a manifest): a Path object per
    # row costs several times the row's own text at 100k rows
    path: Path | str
    relpath: str
    label: str


@dataclass
class Discovery:
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relpath, reason)
    empty_labels: list[str] = field(default_factory=list)
    # one file may be a candidate of several labels (ChestX-ray14's findings)
    multi_label: bool = False


def discover_builtin(spec: BuiltinDataset, files_dir: Path) -> Discovery:
    root = files_dir / "source"
    scenes = builtin.generate(root, spec.options)
    cands = [Candidate(root / s.relpath, s.relpath, s.label) for s in scenes]
    return Discovery(candidates=cands)


def is_label_folder(entry: Path) -> bool:
    return entry.is_dir() and not entry.name.startswith(".") and entry.name.lower() not in IGNORED_NAMES


def label_files(root: Path, folder: Path) -> list[Path]:
    """The files of a label folder that ingestion considers: hidden files and
    folders and system files (Thumbs.db, desktop.ini) left out. The sensor
    polls with this same filter, so both agree on what a label holds."""
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.name.lower() not in IGNORED_NAMES and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def discover_folder(spec: FolderDataset, files_dir: Path) -> Discovery:
    root = spec.path
    if not root.exists():
        raise DatasetError(f"dataset {spec.name!r}: path {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"dataset {spec.name!r}: path {root} is not a folder (kind 'folder' wants one sub-folder per label)")
    out = Discovery()
    for entry in sorted(root.iterdir()):
        rel = entry.relative_to(root).as_posix()
        if entry.name.startswith(".") or entry.name.lower() in IGNORED_NAMES:
            continue
        if not entry.is_dir():
            out.skipped.append((rel, "not in a label folder: files go in <path>/<label>/"))
            continue
        files = label_files(root, entry)
        for p in files:
            out.candidates.append(Candidate(p, p.relative_to(root).as_posix(), entry.name))
        if not files:
            out.empty_labels.append(entry.name)
    if not out.candidates and not out.empty_labels:
        raise DatasetError(f"dataset {spec.name!r}: {root} has no label sub-folders")
    return out


def derive_label(value, rule: LabelRule) -> str:
    """A label from a metadata value by a named rule ("decade": 1957 -> "1950s")."""
    if rule.rule == "value":
        if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
            raise ValueError(f"empty {rule.column}")
        return str(value).strip()
    try:
        year = int(float(str(value).strip()))
    except (TypeError, ValueError):
        raise ValueError(f"{rule.column} {value!r} is not a year") from None
    if rule.rule == "decade":
        return f"{year // 10 * 10}s"
    century = (year - 1) // 100 + 1
    suffix = "th" if 10 <= century % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(century % 10, "th")
    return f"{century}{suffix} century"


def _read_manifest(path: Path) -> pl.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path)
        if suffix in (".csv", ".tsv"):
            return pl.read_csv(path, separator="\t" if suffix == ".tsv" else ",", infer_schema_length=0)
    except Exception as exc:  # polars raises several types; all mean "unreadable"
        raise DatasetError(f"manifest {path}: cannot be read: {exc}") from None
    raise DatasetError(f"manifest {path}: unsupported file type {suffix!r} (use .csv, .tsv or .parquet)")


def discover_manifest(spec: ManifestDataset, files_dir: Path) -> Discovery:
    path = spec.path
    if not path.exists():
        raise DatasetError(f"dataset {spec.name!r}: manifest {path} does not exist")
    opts = spec.options
    df = _read_manifest(path)
    label_col = opts.label_from.column if opts.label_from else opts.label_column
    for col in (opts.path_column, label_col):
        if col not in df.columns:
            raise DatasetError(f"manifest {path}: no column {col!r}; columns are {df.columns}")
    base = path.parent
    out = Discovery()
    for i, row in enumerate(df.select(opts.path_column, label_col).iter_rows()):
        line = f"row {i + 1}"
        raw_path, raw_label = row
        if raw_path is None or str(raw_path).strip() == "":
            out.skipped.append((f"{path.name}:{line}", f"empty path: {line}"))
            continue
        rel = str(raw_path)
        p = os.path.join(base, rel)  # an absolute rel wins, as with Path
        try:
            label = derive_label(raw_label, opts.label_from) if opts.label_from else derive_label(raw_label, LabelRule(column=label_col, rule="value"))
        except ValueError as exc:
            out.skipped.append((rel, f"no label: {line}: {exc}"))
            continue
        if not os.path.isfile(p):
            out.skipped.append((rel, f"file not found: {line}: {p}"))
            continue
        out.candidates.append(Candidate(p, rel, label))
    return out


def _sources() -> dict[str, Callable]:
    from . import paper_formats as collections

    return {
        "builtin": discover_builtin,
        "folder": discover_folder,
        "manifest": discover_manifest,
        "cardb": collections.discover_cardb,
        "ftt": collections.discover_ftt,
        "g3": collections.discover_g3,
        "places365": collections.discover_places365,
        "chestxray14": collections.discover_chestxray14,
    }


def discover(spec, files_dir: Path) -> Discovery:
    return _sources()[spec.kind](spec, files_dir)


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
        from .boxes_file import CHESTXRAY14_LABELS

        path = spec.path / spec.options.boxes_file
        return (path, CHESTXRAY14_LABELS) if path.exists() else None
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
        df = _read_manifest(spec.path)
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
