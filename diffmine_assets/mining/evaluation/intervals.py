"""How sure a comparison is: the mean paired difference between a method
and its control on the same items, with a 95 % interval from a bootstrap
over source images (an image's translations into every label share its
content, so they are resampled together, not as independent pairs)."""

from __future__ import annotations

import numpy as np
import polars as pl

BOOTSTRAP_REPLICATES = 2000
# under this many images a percentile bootstrap has too few distinct resamples to mean anything: no interval, no verdict
MIN_IMAGES = 5
BOOTSTRAP_SEED = 0
LEVEL = 0.95


def paired_gap(method: pl.DataFrame, control: pl.DataFrame, column: str, keys=("image_id", "target_label_key"),
               replicates: int = BOOTSTRAP_REPLICATES, seed: int = BOOTSTRAP_SEED) -> dict | None:
    """Mean of `method[column] - control[column]` over the items both score
    (joined on `keys`), with its 95 % percentile-bootstrap interval over
    images (low and high None under MIN_IMAGES images); None when no item
    is scored by both."""
    joined = method.select(*keys, pl.col(column).alias("m")).join(control.select(*keys, pl.col(column).alias("c")), on=list(keys))
    joined = joined.filter(pl.col("m").is_not_null() & pl.col("c").is_not_null() & pl.col("m").is_not_nan() & pl.col("c").is_not_nan())
    if joined.is_empty():
        return None
    per_image = joined.group_by("image_id").agg((pl.col("m") - pl.col("c")).sum().alias("d"), pl.len().alias("n")).sort("image_id")
    d, n = per_image["d"].to_numpy(), per_image["n"].to_numpy().astype(float)
    if len(d) < MIN_IMAGES:
        return {"difference": round(float(d.sum() / n.sum()), 4), "low": None, "high": None, "pairs": int(n.sum()), "images": len(d)}
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(d), size=(replicates, len(d)))
    means = d[draws].sum(axis=1) / n[draws].sum(axis=1)
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return {"difference": round(float(d.sum() / n.sum()), 4), "low": round(float(low), 4), "high": round(float(high), 4),
            "pairs": int(n.sum()), "images": len(d)}


def mean_interval(values: list[float]) -> tuple[float, float] | None:
    """95 % t-interval of the mean of independent runs (seeds); None under two."""
    from scipy.stats import t  # imported where used: scipy is slow to import

    vals = np.asarray([v for v in values if v is not None and v == v], dtype=float)
    if len(vals) < 2:
        return None
    half = float(t.ppf(1 - (1 - LEVEL) / 2, len(vals) - 1) * vals.std(ddof=1) / np.sqrt(len(vals)))
    return round(float(vals.mean()) - half, 4), round(float(vals.mean()) + half, 4)


def figure_gaps(model: pl.DataFrame, control: pl.DataFrame | None = None, control_kind: str | None = None) -> dict[str, dict]:
    """For each figure of per-image items (image_id, figure, value, chance:
    what `metrics.typicality_items` and `classification_items` give), the
    paired difference of the model from chance on the same images
    (`<figure>_minus_chance`) and, given a control's items scored the same
    way, from the control (`<figure>_minus_<control_kind>`), each with its
    95 % interval over images."""
    gaps = {}
    for (figure,), rows in model.group_by("figure", maintain_order=True):
        if "chance" in rows.columns and rows["chance"].null_count() < len(rows):
            gap = paired_gap(rows, rows.with_columns(pl.col("chance").alias("value")), "value", keys=("image_id",))
            if gap is not None:
                gaps[f"{figure}_minus_chance"] = gap
        if control is not None and control_kind:
            gap = paired_gap(rows, control.filter(pl.col("figure") == figure), "value", keys=("image_id",))
            if gap is not None:
                gaps[f"{figure}_minus_{control_kind}"] = gap
    return gaps
