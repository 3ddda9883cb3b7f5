"""The generic kinds: a folder per label, and a manifest (CSV, TSV or
Parquet) of paths and labels. Each turns a declared dataset into candidates
(file, label) and the problems it met before any image was opened."""

from __future__ import annotations

import math
import os
from pathlib import Path

import polars as pl

from ..config.datasets import FolderDataset, LabelRule, ManifestDataset
from ..images import IGNORED_NAMES
from .base import Candidate, DatasetError, Discovery


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


def left_out(root: Path, folder: Path) -> list[tuple[str, str]]:
    """What `label_files` leaves out of a label folder, each with its reason,
    so nothing goes uncounted: hidden files, hidden folders (once, with how
    many files they hold), system files and links that point nowhere."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        for d in sorted(dirnames):
            if d.startswith("."):
                dirnames.remove(d)
                n = sum(len(f) for _, _, f in os.walk(here / d))
                out.append(((here / d).relative_to(root).as_posix() + "/", f"hidden: a folder whose name starts with '.' ({n} files not read)"))
        for f in sorted(filenames):
            p = here / f
            rel = p.relative_to(root).as_posix()
            if f.lower() in IGNORED_NAMES:
                out.append((rel, "system file: not an image"))
            elif f.startswith("."):
                out.append((rel, "hidden: the name starts with '.'"))
            elif p.is_symlink() and not p.exists():
                out.append((rel, f"broken link: it points to {os.readlink(p)}, which does not exist"))
    return out


def discover_folder(spec: FolderDataset, files_dir: Path) -> Discovery:
    root = spec.path
    if not root.exists():
        raise DatasetError(f"dataset {spec.name!r}: path {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"dataset {spec.name!r}: path {root} is not a folder (kind 'folder' wants one sub-folder per label)")
    out = Discovery()
    for entry in sorted(root.iterdir()):
        rel = entry.relative_to(root).as_posix()
        if entry.name.lower() in IGNORED_NAMES:
            out.skipped.append((rel, "system file: not an image"))
            continue
        if entry.name.startswith("."):
            out.skipped.append((rel + ("/" if entry.is_dir() else ""), "hidden: the name starts with '.'"))
            continue
        if entry.is_symlink() and not entry.exists():
            out.skipped.append((rel, f"broken link: it points to {os.readlink(entry)}, which does not exist"))
            continue
        if not entry.is_dir():
            out.skipped.append((rel, "not in a label folder: files go in <path>/<label>/"))
            continue
        files = label_files(root, entry)
        for p in files:
            out.candidates.append(Candidate(p, p.relative_to(root).as_posix(), entry.name))
        out.skipped.extend(left_out(root, entry))
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


def read_manifest(path: Path) -> pl.DataFrame:
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
    df = read_manifest(path)
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
