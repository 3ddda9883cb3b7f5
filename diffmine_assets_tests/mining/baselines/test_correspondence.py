"""The correspondence baseline (Doersch et al. 2012): HOG windows, the
neighbour search against brute force, and mining on real small images."""

import numpy as np
import polars as pl
import pytest

from diffmine_assets.mining.baselines.correspondence import Windows, brute_force_neighbours, correspondence_patches, image_windows, neighbours
from diffmine_assets.mining.datasets.builtin import boxes as builtin_boxes
from diffmine_assets.mining.datasets.builtin import generate
from diffmine_assets.mining.config import BuiltinOptions, CorrespondenceOptions
from diffmine_assets.mining.evaluation.metrics import top1_hit_rate


def test_hog_windows_cover_the_image_at_each_scale():
    rgb = (np.random.default_rng(0).random((64, 48, 3)) * 255).astype(np.uint8)
    opts = CorrespondenceOptions()
    desc, boxes, energy = image_windows(rgb, 16, opts)
    # a 16 px window is 4 cells of 4 px at scale 1: (64/4 - 3) x (48/4 - 3) windows, stride one cell
    assert desc.shape == (13 * 9, 3 * 3 * 2 * 2 * 9) and len(boxes) == len(energy) == len(desc)
    assert boxes[:, 0].min() == 0 and boxes[:, 2].max() == 48 and boxes[:, 3].max() == 64
    assert np.allclose(np.linalg.norm(desc, axis=1), 1, atol=1e-4) and np.allclose(desc.mean(axis=1), 0, atol=1e-5)
    assert image_windows(rgb[:8, :8], 16, opts)[0].shape[0] == 0  # smaller than the window: none
    big = image_windows(rgb, 32, opts)[1]
    assert (big[:, 2] - big[:, 0]).max() == 32 and len(big) < len(boxes)


def test_neighbour_search_equals_brute_force():
    rng = np.random.default_rng(1)
    n, d = 300, 12
    desc = rng.normal(size=(n, d)).astype(np.float32)
    image = rng.integers(0, 25, size=n).astype(np.int32)
    pool = Windows(desc, np.zeros((n, 4), np.int32), image, np.ones(n, np.float32), [str(i) for i in range(25)])
    q = rng.choice(n, size=40, replace=False)
    per_image_max = int(np.bincount(image).max())
    fast = neighbours(desc[q], image[q], pool, 8, per_image_max)
    slow = brute_force_neighbours(desc[q], image[q], pool, 8)
    assert np.array_equal(fast, slow)
    # one per image, never the query's own image
    for r, row in enumerate(fast):
        imgs = image[row[row >= 0]]
        assert len(set(imgs.tolist())) == len(imgs) and image[q[r]] not in imgs


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The built-in planted scenes (64 px), the relpath as image id."""
    root = tmp_path_factory.mktemp("planted")
    scenes = generate(root, BuiltinOptions(images_per_label=12, seed=4))
    images = pl.DataFrame([{"image_id": s.relpath, "path": str(root / s.relpath), "label_key": s.label, "width": 64, "height": 64} for s in scenes])
    boxes = pl.DataFrame(builtin_boxes(scenes)).rename({"relpath": "image_id"})
    return images, boxes


def test_the_baseline_finds_planted_elements_on_real_images(planted):
    images, boxes = planted
    opts = CorrespondenceOptions(candidates=200, detectors=8, keep=4, negatives=500, k=6).for_window(14)
    tables = [correspondence_patches(images, key, opts, per_image=3, per_label=100)[0] for key in sorted(images["label_key"].unique().to_list())]
    patches = pl.concat(tables)
    assert set(patches.columns) >= {"image_id", "x0", "y0", "x1", "y1", "typicality", "rank_in_image", "rank_in_label", "selection"}
    hit, n = top1_hit_rate(patches, boxes, images)
    chance = (boxes.filter(pl.col("role") == "label").with_columns(((pl.col("x1") - pl.col("x0")) * (pl.col("y1") - pl.col("y0"))).alias("a"))["a"].sum()
              / (64 * 64 * images.height))
    assert n > 0 and hit > 3 * chance, (hit, chance)  # far better than a random window
    again = pl.concat([correspondence_patches(images, key, opts, per_image=3, per_label=100)[0] for key in sorted(images["label_key"].unique().to_list())])
    assert again.equals(patches)  # seeded: the same patches


def test_slope_and_crossover():
    from diffmine_assets.bench.scaling import crossover, slope

    sizes = [100, 200, 400, 800]
    assert slope(sizes, [1, 2, 4, 8]) == pytest.approx(1.0)
    assert slope(sizes, [1, 4, 16, 64]) == pytest.approx(2.0)
    # faster from 400 on; a win at 100 followed by a loss does not count
    assert crossover(sizes, [5, 9, 10, 12], [4, 10, 16, 64]) == 200
    assert crossover(sizes, [1, 9, 10, 12], [4, 8, 16, 64]) == 400
    assert crossover(sizes, [5, 9, 20, 80], [4, 8, 16, 64]) is None


def test_bench_scaling_smoke(tmp_path, capsys):
    """The command end to end at two tiny sizes (the full run is not for CI)."""
    import json

    from diffmine_assets.cli import main as cli_main
    from diffmine_assets_tests.conftest import write_config

    cfg = write_config(tmp_path, [{"name": "builtin", "kind": "builtin", "options": {"resolution": 16, "seed": 2}}])
    argv = ["--config", str(cfg), "bench", "scaling", "--dataset", "builtin", "--sizes", "8,16",
            "--set", "training.steps=4", "--set", "training.batch_size=8", "--set", "typicality.n_samples=8", "--set", "typicality.groups=2",
            "--set", "baseline.candidates=40", "--set", "baseline.detectors=3", "--set", "baseline.keep=2", "--set", "baseline.k=3", "--set", "baseline.negatives=100"]
    assert cli_main(argv) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["sizes"] == [8, 16] and len(figures["runs"]) == 2
    for key in ("diffmine_slope", "baseline_slope", "crossover_images", "quality_by_size"):
        assert key in figures
    assert all(r["diffmine_s"] > 0 and r["baseline_s"] > 0 for r in figures["runs"])
    # run again in the same lake: every training runs whole again (nothing resumed, nothing reused)
    assert cli_main(argv) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for first, second in zip(figures["runs"], again["runs"]):
        assert first["training_steps"] == second["training_steps"] == 4
        assert first["resumed_from_step"] == second["resumed_from_step"] == 0 and second["train_s"] > 0
    assert set(figures["quality_by_size"]) == {"8", "16"}
    assert (tmp_path / "lake" / "files" / "builtin" / "bench" / "scaling" / "scaling.png").exists()
    from diffmine_assets.mining.report.page import render_report

    bench = tmp_path / "lake" / "files" / "builtin" / "bench" / "scaling"
    page = render_report("builtin", [], None, {}, scaling=((bench / "scaling.png").read_bytes(), json.loads((bench / "scaling.json").read_text())))
    assert "Cost against the number of images" in page and "baseline_slope" in page


def test_candidates_are_drawn_from_the_high_gradient_windows():
    """Doersch et al. draw candidates among high-contrast patches: on an image
    of faint texture on its left half and strong texture on its right, every
    window that passes the filter reaches into the strong half. (An energy
    read from the block-normalised descriptor is about the same for both
    textures, and let as many faint windows through as strong ones.)"""
    noise = np.random.default_rng(0).random((48, 96, 3))
    rgb = (128 + (noise - 0.5) * np.where(np.arange(96) < 48, 16, 250)[None, :, None]).astype(np.uint8)
    opts = CorrespondenceOptions()
    _, boxes, energy = image_windows(rgb, 16, opts)
    strong = energy >= np.median(energy)
    assert 0.3 <= strong.mean() <= 0.6
    assert (boxes[strong, 2] > 48).all()
    faint, bright = energy[boxes[:, 2] <= 44], energy[boxes[:, 0] >= 52]
    assert faint.max() * 5 < bright.min()
