"""What the benchmarks share: a dataset ingested outside the graph, and the
mean and spread of a figure over runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import yaml

from ..mining.datasets.ingest import ground_truth_boxes, ingest
from ..storage.lake import Lake


def prepare(spec, files_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The dataset's images table (ingesting it, as the `images` asset does)
    and its element boxes, if it has any."""
    result = ingest(spec.name, spec, files_dir)
    if result.images.is_empty():
        raise ValueError(f"dataset {spec.name!r} has no usable image")
    return result.images, ground_truth_boxes(spec.name, spec, result.images)


def mean_sd(values) -> dict | None:
    """Mean and sample standard deviation (n - 1) of the numbers among
    `values` (NaN, None and booleans left out), with their count."""
    vals = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]
    if not vals:
        return None
    return {"mean": round(float(np.mean(vals)), 4), "sd": round(float(np.std(vals, ddof=1)), 4) if len(vals) > 1 else None, "n": len(vals)}


def work_folder(project, args, name: str) -> Path:
    """--work, or a folder of the lake's `_bench` files (kept between runs)."""
    return Path(args.work) if args.work else Lake(project.lake).files_dir("_bench", name)


def set_overrides(items) -> dict:
    """`--set SECTION.FIELD=VALUE` flags as overrides (YAML values)."""
    overrides = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--set wants SECTION.FIELD=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k] = yaml.safe_load(v)
    return overrides
