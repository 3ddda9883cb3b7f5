"""The typicality benchmark on a tiny real model: both sides at one
precision on one ladder, and the speedup split into its parts."""

import numpy as np
import torch

from diffmine_assets.bench.typicality import published_loop, run_benchmark, window_scores
from diffmine_assets.mining.config import TypicalityOptions
from diffmine_assets.mining.denoisers.tiny import TinyDenoiser


def test_the_benchmark_compares_on_equal_footing():
    model = TinyDenoiser(["a", "b", "c"], 16, seed=0)
    x0 = torch.rand(3, 3, 16, 16) * 2 - 1
    base = TypicalityOptions(n_samples=8, groups=2, precision="float32", label_matrix="held-out")
    lines = []
    fig = run_benchmark(model, x0, "a", base, image_size=16, window=6, stride=2, target=0.2, reference_n=32, equal_n=8, repeats=1,
                        held_out_share=0.5, ladder=(8, 16), log=lines.append)
    assert fig["precision"] == "float32" and fig["ladder"] == [8, 16]
    # equal footing: the engine ran at the published loop's precision, and both estimate the same maps (the same estimand)
    assert fig["engine_precision"] == fig["precision"]
    assert fig["spearman_published_vs_engine_equal_n"] > 0.3, fig["spearman_published_vs_engine_equal_n"]
    # the same budget in samples: equal_n for both sides, each scored against the same float32 reference
    assert fig["equal_n"] == 8 and set(fig["spearman_at_equal_n"]) == {"published", "engine"}
    assert all(-1 <= v <= 1 for v in fig["spearman_at_equal_n"].values())
    assert any(line.startswith("published loop (float32)") for line in lines) and any("engine (" in line for line in lines)
    for key in ("fidelity_speedup", "speedup_from_sampling", "speedup_from_batching", "overhead_ratio", "speedup_from_precision_not_counted"):
        assert key in fig
    assert fig["speedup_from_batching"] > 0 and 0 < fig["overhead_ratio"]
    # the shipped cost counts the label matrix on the held-out share
    assert fig["shipped_forward_per_image"] == fig["one_label_forward_per_image"] + 0.5 * fig["matrix_forward_per_image"]
    assert fig["matrix_forward_per_image"] > 0


def test_the_published_loop_at_bfloat16_agrees_with_float32():
    model = TinyDenoiser(["a", "b"], 16, seed=1)
    x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    opts = TypicalityOptions(n_samples=8, groups=2)
    m32, _, n32 = published_loop(model, x0, "a", 20, opts, precision="float32")
    m16, _, n16 = published_loop(model, x0, "a", 20, opts, precision="bfloat16")
    assert n32 == n16 == 2 * 2 * 20
    s32, s16 = window_scores(m32, 16, 6, 2), window_scores(m16, 16, 6, 2)
    assert np.corrcoef(s32, s16)[0, 1] > 0.8
