import numpy as np
import polars as pl
import pytest

from diffmine_assets.mining.clustering import cluster_patches
from diffmine_assets.mining.config import ClusterOptions
from diffmine_assets.mining.evaluation.metrics import cluster_figures


def blobs():
    """Three tight groups of unit vectors. Group A has the highest MEAN
    typicality (one outlier) but group B the highest MEDIAN."""
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8)
    feats, typ = [], []
    group_typ = {0: [0.0, 0.0, 0.0, 0.0, 10.0], 1: [1.0, 1.0, 1.0, 1.0, 1.0], 2: [0.5, 0.5, 0.5, 0.5, 0.5]}
    for g in range(3):
        for v in group_typ[g]:
            f = centres[g] + rng.normal(0, 0.01, 8)
            feats.append(f / np.linalg.norm(f))
            typ.append(v)
    n = len(typ)
    patches = pl.DataFrame({"image_id": [f"i{i}" for i in range(n)], "x0": [0] * n, "y0": [0] * n, "x1": [4] * n, "y1": [4] * n,
                            "typicality": typ, "rank_in_label": list(range(1, n + 1))})
    return np.array(feats, dtype=np.float32), patches


def test_clusters_are_ranked_by_median_typicality():
    feats, patches = blobs()
    clusters, members = cluster_patches(feats, patches, ClusterOptions(k=3, seed=0))
    assert clusters["rank"].to_list() == [1, 2, 3]
    assert clusters["median_typicality"].to_list() == [1.0, 0.5, 0.0]
    assert clusters["mean_typicality"].to_list()[2] == pytest.approx(2.0)  # the mean would have put it first
    top_members = members.filter(pl.col("cluster") == 1)["image_id"].to_list()
    assert sorted(top_members) == ["i5", "i6", "i7", "i8", "i9"]


def test_members_come_nearest_to_centre_first():
    feats, patches = blobs()
    _, members = cluster_patches(feats, patches, ClusterOptions(k=3))
    for _, g in members.group_by("cluster"):
        g = g.sort("rank_in_cluster")
        assert g["distance"].is_sorted()
        assert g["rank_in_cluster"].to_list() == list(range(1, len(g) + 1))


def test_k_never_exceeds_the_patches():
    feats, patches = blobs()
    clusters, members = cluster_patches(feats[:4], patches.head(4), ClusterOptions(k=32))
    assert len(clusters) == 4 and len(members) == 4
    with pytest.raises(ValueError, match="no patches"):
        cluster_patches(feats[:0], patches.head(0), ClusterOptions())


def test_cluster_figures_on_known_elements():
    boxes = pl.DataFrame({"image_id": ["a", "b", "c"], "kind": ["disk", "bar", "star"], "role": ["label", "distractor", "label"],
                          "label_key": ["l", "l", "m"], "x0": [0, 0, 0], "y0": [0, 0, 0], "x1": [10, 10, 10], "y1": [10, 10, 10]})
    m_l = pl.DataFrame({"image_id": ["a", "a", "a", "b"], "x0": [0, 1, 50, 0], "y0": [0] * 4, "x1": [8, 9, 58, 8], "y1": [8] * 4, "cluster": [1, 1, 1, 2]})
    m_m = pl.DataFrame({"image_id": ["c", "c"], "x0": [0, 0], "y0": [0, 0], "x1": [8, 8], "y1": [8, 8], "cluster": [1, 1]})
    f = cluster_figures({"l": m_l, "m": m_m}, boxes)
    assert f["cluster_purity"] == pytest.approx((2 + 1 + 2) / 6, abs=1e-3)  # cluster 1 of l: 2 disks, 1 background
    assert f["label_elements_found"] == 1.0
    assert f["distractor_top3_share"] == 0.5  # label l's cluster 2 is the bar


def test_a_cluster_of_background_is_not_pure():
    boxes = pl.DataFrame({"image_id": ["a"], "kind": ["disk"], "role": ["label"], "label_key": ["l"], "x0": [0], "y0": [0], "x1": [10], "y1": [10]})
    # cluster 1: three background patches; cluster 2: one disk, one background
    m = pl.DataFrame({"image_id": ["a"] * 5, "x0": [50, 60, 70, 0, 80], "y0": [0] * 5, "x1": [58, 68, 78, 8, 88], "y1": [8] * 5, "cluster": [1, 1, 1, 2, 2]})
    f = cluster_figures({"l": m}, boxes)
    assert f["cluster_purity"] == pytest.approx(1 / 5)  # background counted as a kind, it was (3 + 1) / 5
