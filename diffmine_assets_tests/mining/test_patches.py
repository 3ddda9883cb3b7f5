import numpy as np
import polars as pl
import pytest
import torch

from diffmine_assets.mining.config import PatchOptions
from diffmine_assets.mining.patches import greedy_non_overlapping, image_windows, window_means
from diffmine_assets.mining.patches import patch_table


def test_window_means_match_brute_force():
    m = torch.rand((2, 13, 11), generator=torch.Generator().manual_seed(0))
    got = window_means(m, 4, 3)
    for g in range(2):
        for iy, y in enumerate(range(0, 13 - 4 + 1, 3)):
            for ix, x in enumerate(range(0, 11 - 4 + 1, 3)):
                assert got[g, iy, ix].item() == pytest.approx(m[g, y : y + 4, x : x + 4].mean().item(), abs=1e-6)


def test_greedy_windows_do_not_overlap_and_come_best_first():
    rng = np.random.default_rng(0)
    scores = rng.random((20, 20))
    chosen = greedy_non_overlapping(scores, k=6, stride=1, n=5)
    assert len(chosen) == 5
    vals = [scores[y, x] for y, x in chosen]
    assert vals == sorted(vals, reverse=True) and vals[0] == scores.max()
    for i, (ay, ax) in enumerate(chosen):
        for by, bx in chosen[i + 1 :]:
            assert abs(ay - by) >= 6 or abs(ax - bx) >= 6


def test_the_planted_hot_spot_is_found_in_original_pixels():
    # a 16 x 16 map with a hot spot, for an image of 160 x 320 pixels
    maps = torch.zeros((3, 16, 16))
    maps[:, 4:6, 10:12] = 1.0
    win = image_windows(maps, 160, 320, window_px=30, stride_px=2, per_image=3, rng=np.random.default_rng(0))
    best = win.top[0]
    cy, cx = best.y0 + 15, best.x0 + 15
    assert 40 <= cy <= 60 and 200 <= cx <= 240
    assert best.score > win.top[1].score and best.stderr == pytest.approx(0.0, abs=1e-6)
    assert win.bottom[0].score <= win.top[-1].score


def test_image_smaller_than_the_window_is_skipped():
    assert image_windows(torch.zeros((2, 8, 8)), 10, 40, window_px=14, stride_px=1, per_image=2, rng=np.random.default_rng(0)) is None


def test_patch_table_ranks_and_selections():
    rng = np.random.default_rng(1)
    maps = rng.random((4, 2, 8, 8)).astype(np.float16)
    typ = pl.DataFrame({"dataset": ["d"] * 4, "label": ["L"] * 4, "label_key": ["l"] * 4, "image_id": list("abcd"), "path": list("abcd"),
                        "width": [32, 32, 32, 8], "height": [32, 32, 32, 8], "map_index": [0, 1, 2, 3], "checkpoint_id": ["c"] * 4, "params": ["{}"] * 4})
    table, skipped = patch_table(typ, maps, PatchOptions(window_px=10, stride_px=2, per_image=3, per_label=7))
    assert skipped == 1
    top = table.filter(pl.col("selection") == "top").sort("rank_in_label")
    assert top["rank_in_label"].to_list() == list(range(1, 8))
    assert top["typicality"].to_list() == sorted(top["typicality"].to_list(), reverse=True)
    assert set(top["image_id"]) <= {"a", "b", "c"}
    # within an image, rank_in_image follows typicality
    for _, g in top.group_by("image_id"):
        g = g.sort("rank_in_image")
        assert g["typicality"].to_list() == sorted(g["typicality"].to_list(), reverse=True)
    assert ((table["x1"] - table["x0"]) == 10).all() and (table["x1"] <= 32).all() and (table["y1"] <= 32).all()
    assert set(table["selection"]) == {"top", "bottom", "random"}
    assert table.filter(pl.col("selection") == "bottom").sort("rank_in_label")["typicality"].is_sorted()
