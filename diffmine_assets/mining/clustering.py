"""Clustering patch features into visual elements, ranked by typicality
(METHOD.md section 4): k-means (scikit-learn), clusters ranked by the median
typicality of their members, members nearest-to-centre first."""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from .config.options import ClusterOptions


def cluster_patches(features: np.ndarray, patches: pl.DataFrame, opts: ClusterOptions) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(clusters, members) tables for one label's patches. `patches` holds at
    least image_id, x0, y0, x1, y1, typicality, rank_in_label, one row per
    feature row."""
    n = len(patches)
    if n == 0:
        raise ValueError("no patches to cluster")
    k = min(opts.k, n)
    from sklearn.cluster import KMeans  # scikit-learn takes about 2 s to import: only where it is used

    km = KMeans(n_clusters=k, random_state=opts.seed, n_init=opts.n_init).fit(features.astype(np.float64))
    assign = km.labels_
    dist = np.linalg.norm(features - km.cluster_centers_[assign], axis=1)
    typ = patches["typicality"].to_numpy()
    stats = []
    for c in range(k):
        sel = assign == c
        stats.append((c, int(sel.sum()), float(np.median(typ[sel])), float(typ[sel].mean()), float(typ[sel].std()), float(dist[sel].mean())))
    # best first: highest median typicality, larger cluster on ties
    order = sorted(stats, key=lambda s: (-s[2], -s[1], s[0]))
    rank_of = {s[0]: r for r, s in enumerate(order, start=1)}
    params = json.dumps({**opts.model_dump(), "k_used": k}, sort_keys=True)
    clusters = pl.DataFrame(
        {
            "cluster": [rank_of[s[0]] for s in order],
            "rank": [rank_of[s[0]] for s in order],
            "size": [s[1] for s in order],
            "median_typicality": [s[2] for s in order],
            "mean_typicality": [s[3] for s in order],
            "typicality_std": [s[4] for s in order],
            "spread": [s[5] for s in order],
        }
    ).with_columns(pl.lit(params).alias("params"), pl.lit(float(km.inertia_)).alias("inertia"))
    members = (
        patches.select("image_id", "x0", "y0", "x1", "y1", "typicality", "rank_in_label")
        .with_columns(
            pl.Series("cluster", [rank_of[int(a)] for a in assign], dtype=pl.Int32),
            pl.Series("distance", dist.astype(np.float64)),
        )
        .sort("cluster", "distance")
        .with_columns(pl.int_range(1, pl.len() + 1).over("cluster").cast(pl.Int32).alias("rank_in_cluster"))
    )
    return clusters.with_columns(pl.col("cluster", "rank", "size").cast(pl.Int32)), members
