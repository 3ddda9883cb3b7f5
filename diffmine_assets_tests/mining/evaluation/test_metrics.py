"""The quality figures on hand-made patches and boxes."""

import polars as pl
import pytest

from diffmine_assets.mining.evaluation.metrics import chance_levels, top1_hit_rate


def boxes():
    return pl.DataFrame({"image_id": ["a", "b", "c"], "kind": ["disk"] * 3, "role": ["label"] * 3, "label_key": ["l"] * 3,
                         "x0": [0, 0, 0], "y0": [0, 0, 0], "x1": [10, 10, 10], "y1": [10, 10, 10]})


def best(image_ids, x0s):
    return pl.DataFrame({"image_id": image_ids, "selection": ["top"] * len(x0s), "rank_in_image": [1] * len(x0s),
                         "x0": x0s, "y0": [0] * len(x0s), "x1": [x + 8 for x in x0s], "y1": [8] * len(x0s)})


def test_top1_counts_every_image_with_an_element_a_window_cut_off_is_a_miss():
    images = pl.DataFrame({"image_id": ["a", "b", "c"]})
    # a hits, b misses, c's best window was cut by per_label: it is not in the patches
    rate, n = top1_hit_rate(best(["a", "b"], [0, 40]), boxes(), images)
    assert n == 3 and rate == pytest.approx(1 / 3)  # counted over the stored windows only, it was 1 / 2


def test_top1_counts_only_the_scored_images():
    rate, n = top1_hit_rate(best(["a"], [0]), boxes(), pl.DataFrame({"image_id": ["a"]}))
    assert (rate, n) == (1.0, 1)


def test_chance_of_pixel_ap_is_the_share_of_element_pixels():
    images = pl.DataFrame({"image_id": ["a", "b", "c"], "width": [20] * 3, "height": [20] * 3})
    rand = best(["a", "b", "c"], [0, 10, 10]).with_columns(pl.lit("random").alias("selection"), pl.lit(8).alias("window_px"), pl.lit(2).alias("stride_px"))
    top = rand.with_columns(pl.lit("top").alias("selection"))
    chance = chance_levels(pl.concat([rand, top]), boxes(), images)
    assert chance["pixel_auc_pr"] == pytest.approx(100 / 400)
    # 8 px windows every 2 px on 20 px: centres at 4, 6, ..., 16; inside the 10 px box: 4, 6, 8 of 7 per axis
    assert chance["top1_hit_rate"] == pytest.approx((3 / 7) ** 2, abs=1e-4)
    # an image whose best window the model lost to the per_label cut is a miss for chance too
    cut = chance_levels(pl.concat([rand, top.filter(pl.col("image_id") != "c")]), boxes(), images)
    assert cut["top1_hit_rate"] == pytest.approx((3 / 7) ** 2 * 2 / 3, abs=1e-4)
    assert chance["distractor_share_top50"] == 0.0  # no distractor box: no random window can be on one


def test_top1_chance_is_over_every_image_not_the_random_windows_that_survived_the_cut():
    """Issue 25: 40 images, half of each covered by its element; the stored
    random windows are cut to per_label (10) of the label's 120 on their own
    draw, so chance (0.025) counted other images as misses than the model's
    figure did. Now both count the same images: those whose best window the
    model kept, each at its exact rate (0.5)."""
    import numpy as np

    from diffmine_assets.mining.config.options import PatchOptions
    from diffmine_assets.mining.patches import patch_table

    n, side = 40, 32
    typ = pl.DataFrame({"image_id": [f"i{k}" for k in range(n)], "path": ["x"] * n, "map_index": list(range(n)), "width": [side] * n,
                        "height": [side] * n, "dataset": ["d"] * n, "label": ["l"] * n, "label_key": ["l"] * n, "checkpoint_id": ["c"] * n,
                        "params": ["{}"] * n})
    maps = np.random.default_rng(0).random((n, 2, 8, 8)).astype(np.float32)
    patches, _ = patch_table(typ, maps, PatchOptions(window_px=8, stride_px=2, per_image=3, per_label=10))
    assert patches.filter((pl.col("selection") == "random") & (pl.col("rank_in_image") == 1)).height < 10
    half = pl.DataFrame({"image_id": typ["image_id"], "role": ["label"] * n, "x0": [0] * n, "y0": [0] * n, "x1": [side // 2] * n, "y1": [side] * n})
    chance = chance_levels(patches, half, typ)
    kept = patches.filter((pl.col("selection") == "top") & (pl.col("rank_in_image") == 1))["image_id"].n_unique()
    assert 0 < kept < n
    assert chance["top1_hit_rate"] == pytest.approx(0.5 * kept / n, abs=0.01)
