"""The paper's collections, read in their own published formats (METHOD.md
section 8): CarDB, Faces Through Time, G^3, Places365 and ChestX-ray14.

Each reader turns the collection's metadata into candidates (file, label)
and counts what it cannot use (a year that is no year, a listed image that
is missing, an unknown category id) as skips with the file and the reason:
ingestion then opens and validates the images like any other kind's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

from ..config.datasets import LabelRule
from .base import Candidate, DatasetError, Discovery
from .folders import derive_label, is_label_folder, label_files, left_out

_YEAR_RE = re.compile(r"(?<!\d)(1[0-9]{3}|20[0-9]{2})(?!\d)")
_DECADE_RE = re.compile(r"^(?P<year>1[0-9]{3}|20[0-9]{2})(?:s|'?s)?(?:\s*[-_]\s*(1[0-9]{3}|20[0-9]{2}))?$")
_FILE_KEYS = ("file", "filename", "file_name", "image", "path", "name")
# ChestX-ray14's box file names one finding differently from its metadata
CHESTXRAY14_LABELS = {"Infiltrate": "Infiltration"}


def _require(path: Path, what: str, name: str) -> Path:
    if not path.exists():
        raise DatasetError(f"dataset {name!r}: {what} {path} does not exist")
    return path


def year_of(value) -> int:
    """A year from a metadata value: a number, or text holding exactly one
    four-digit year ("c. 1957", "1957?"); anything else raises ValueError."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"year {value!r} is not a year")
    if isinstance(value, (int, float)):
        if value != value or not 1000 <= value < 2100:
            raise ValueError(f"year {value!r} is not a year")
        return int(value)
    found = set(_YEAR_RE.findall(str(value)))
    if len(found) != 1:
        raise ValueError(f"year {value!r} is not a year" + (" (several years)" if found else ""))
    return int(found.pop())


def _cardb_records(raw, source: Path) -> list[tuple[str, object]]:
    """(file, year) pairs from either layout of the metadata: a list of
    records, or a mapping from file name to a record or a bare year."""
    if isinstance(raw, dict) and isinstance(raw.get("images"), list):
        raw = raw["images"]
    pairs = []
    if isinstance(raw, list):
        for i, rec in enumerate(raw):
            if not isinstance(rec, dict):
                pairs.append((f"{source.name}[{i}]", ValueError(f"record {i} is not an object")))
                continue
            key = next((k for k in _FILE_KEYS if k in rec), None)
            if key is None:
                pairs.append((f"{source.name}[{i}]", ValueError(f"record {i} names no file (keys {_FILE_KEYS})")))
                continue
            pairs.append((str(rec[key]), rec.get("year")))
        return pairs
    if isinstance(raw, dict):
        for name, rec in raw.items():
            pairs.append((str(name), rec.get("year") if isinstance(rec, dict) else rec))
        return pairs
    raise DatasetError(f"metadata {source}: expected a list of records or a mapping by file name, got {type(raw).__name__}")


def discover_cardb(spec, files_dir: Path) -> Discovery:
    root = _require(spec.path, "path", spec.name)
    meta = _require(root / spec.options.metadata, "metadata", spec.name)
    try:
        raw = json.loads(meta.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"metadata {meta}: not valid JSON: {exc}") from None
    out = Discovery()
    rule = LabelRule(column="year", rule=spec.options.rule)
    for name, year in _cardb_records(raw, meta):
        if isinstance(year, ValueError):
            out.skipped.append((name, f"no label: {year}"))
            continue
        try:
            label = derive_label(year_of(year), rule)
        except ValueError as exc:
            out.skipped.append((name, f"no label: {exc}"))
            continue
        p = root / name
        if not p.is_file():
            out.skipped.append((name, f"file not found: listed in {meta.name}: {p}"))
            continue
        out.candidates.append(Candidate(p, name, label))
    return out


def decade_of_folder(name: str) -> str | None:
    """'1950', '1950s', "1950's" or '1950-1959' -> '1950s'; anything else None."""
    m = _DECADE_RE.match(name.strip())
    if not m:
        return None
    year = int(m.group("year"))
    return f"{year // 10 * 10}s" if year % 10 == 0 else None


def discover_ftt(spec, files_dir: Path) -> Discovery:
    root = _require(spec.path, "path", spec.name)
    out = Discovery()
    for entry in sorted(root.iterdir()):
        rel = entry.relative_to(root).as_posix()
        if not is_label_folder(entry):
            if entry.is_file() and not entry.name.startswith("."):
                out.skipped.append((rel, "not in a decade folder: files go in <path>/<decade>/"))
            continue
        decade = decade_of_folder(entry.name)
        files = label_files(root, entry)
        if decade is None:
            out.skipped.extend((p.relative_to(root).as_posix(), f"no label: folder {entry.name!r} is not a decade (1950, 1950s)") for p in files)
            continue
        out.candidates.extend(Candidate(p, p.relative_to(root).as_posix(), decade) for p in files)
        out.skipped.extend(left_out(root, entry))
        if not files:
            out.empty_labels.append(decade)
    if not out.candidates and not out.skipped and not out.empty_labels:
        raise DatasetError(f"dataset {spec.name!r}: {root} has no decade folders")
    return out


def discover_g3(spec, files_dir: Path) -> Discovery:
    root = _require(spec.path, "path", spec.name)
    pattern = re.compile(spec.options.label_pattern)
    out = Discovery()
    for p in label_files(root, root):
        rel = p.relative_to(root).as_posix()
        m = pattern.match(p.stem)
        label = (m.group("label") or "").strip() if m else ""
        if spec.options.separators_to_spaces:
            label = " ".join(label.replace("_", " ").split())
        if not label:
            out.skipped.append((rel, f"no label: file name {p.stem!r} does not match label_pattern"))
            continue
        out.candidates.append(Candidate(p, rel, label))
    return out


def _places_images_dir(root: Path, opts) -> Path:
    if opts.images_dir:
        return root / opts.images_dir
    for name in ("val_256", "val_large"):
        if (root / name).is_dir():
            return root / name
    return root


def places_category(name: str) -> str:
    """'/a/apartment_building/outdoor' -> 'apartment_building/outdoor'."""
    parts = [p for p in name.strip().split("/") if p]
    return "/".join(parts[1:] if len(parts) > 1 and len(parts[0]) == 1 else parts)


def discover_places365(spec, files_dir: Path) -> Discovery:
    root = _require(spec.path, "path", spec.name)
    opts = spec.options
    cats_file = _require(root / opts.categories_file, "categories file", spec.name)
    split_file = _require(root / opts.split_file, "split file", spec.name)
    categories = {}
    for n, line in enumerate(cats_file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise DatasetError(f"{cats_file}:{n}: expected '<category> <id>', got {line!r}")
        categories[int(parts[1])] = places_category(parts[0])
    keep = {places_category(c) for c in opts.categories} if opts.categories else None
    if keep and keep - set(categories.values()):
        raise DatasetError(f"dataset {spec.name!r}: categories {sorted(keep - set(categories.values()))} are not in {cats_file.name}")
    images = _places_images_dir(root, opts)
    out = Discovery()
    for n, line in enumerate(split_file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        where = f"{split_file.name}:{n}"
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            out.skipped.append((where, f"no label: expected '<image> <category id>', got {line!r}"))
            continue
        rel = parts[0].lstrip("/")
        label = categories.get(int(parts[1]))
        if label is None:
            out.skipped.append((rel, f"no label: {where}: category id {parts[1]} is not in {cats_file.name}"))
            continue
        if keep is not None and label not in keep:
            continue
        p = images / rel
        if not p.is_file():
            out.skipped.append((rel, f"file not found: listed in {where}: {p}"))
            continue
        out.candidates.append(Candidate(p, p.relative_to(root).as_posix(), label))
    return out


def _index_by_name(root: Path) -> dict[str, Path]:
    """ChestX-ray14 ships its images in several folders (images_001/images/
    ... images_012/images/) and names them by file name alone."""
    found: dict[str, Path] = {}
    for p in root.rglob("*.png"):
        if not any(part.startswith(".") for part in p.relative_to(root).parts):
            found.setdefault(p.name, p)
    return found


def findings_of(text) -> list[str]:
    return sorted({f.strip() for f in str(text or "").split("|") if f.strip()})


def discover_chestxray14(spec, files_dir: Path) -> Discovery:
    root = _require(spec.path, "path", spec.name)
    opts = spec.options
    meta = _require(root / opts.metadata, "metadata", spec.name)
    try:
        df = pl.read_csv(meta, infer_schema_length=0)
    except Exception as exc:  # polars raises several types; all mean "unreadable"
        raise DatasetError(f"metadata {meta}: cannot be read: {exc}") from None
    for col in ("Image Index", "Finding Labels"):
        if col not in df.columns:
            raise DatasetError(f"metadata {meta}: no column {col!r}; columns are {df.columns}")
    by_name = _index_by_name(root)
    keep = set(opts.findings) if opts.findings else None
    out = Discovery(multi_label=True)
    for n, (name, text) in enumerate(df.select("Image Index", "Finding Labels").iter_rows(), 2):
        findings = findings_of(text)
        if not name or not findings:
            out.skipped.append((name or f"{meta.name}:{n}", f"no label: {meta.name} line {n} has no {'Image Index' if not name else 'finding'}"))
            continue
        if keep is not None:
            findings = [f for f in findings if f in keep]
            if not findings:
                continue
        p = by_name.get(name)
        if p is None:
            out.skipped.append((name, f"file not found: listed in {meta.name} line {n}, no such PNG under {root}"))
            continue
        rel = p.relative_to(root).as_posix()
        out.candidates.extend(Candidate(p, rel, f) for f in findings)
    return out
