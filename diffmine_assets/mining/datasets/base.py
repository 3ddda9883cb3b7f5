"""The vocabulary every dataset source and reader shares: what a source
returns (candidates and the problems it met), the error of a dataset that
cannot be read, and the schemas of the tables ingestion writes. It imports
nothing of its siblings, so every one of them can import it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl


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


@dataclass
class GroundTruth:
    boxes: pl.DataFrame
    problems: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)

    @property
    def problem_counts(self) -> dict[str, int]:
        return dict(Counter(reason.split(":")[0] for _, reason in self.problems))


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
