"""Masked translation (DiffEdit): the edit mask finds where the labels differ,
and a masked translation changes the element inside it and keeps the rest
of the picture, on a tiny model trained for seconds on scenes whose labels
differ by one small coloured square."""

import numpy as np
import pytest
import torch

from diffmine_assets.mining.config import TranslationOptions
from diffmine_assets.mining.evaluation.translations import layout_figures
from diffmine_assets.mining.translation.inversion import to_uint8, translate
from diffmine_assets.mining.translation.masks import difference_maps, edit_masks, masks_from
from diffmine_assets_tests.mining.translation.tiny_model import trained_on

LABELS = ["red", "blue"]
COLOUR = {"red": torch.tensor([0.9, -0.8, -0.8]), "blue": torch.tensor([-0.8, -0.8, 0.9])}
SIDE, SQUARE = 16, 5


def _scenes(n: int, seed: int) -> tuple[torch.Tensor, list[str], list[tuple[int, int]]]:
    """Grey gradients at random angles, the same for both labels; each holds
    one square whose colour is the label."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, SIDE), torch.linspace(-1, 1, SIDE), indexing="ij")
    out, keys, corners = [], [], []
    for i in range(n):
        key = LABELS[i % 2]
        angle = torch.rand(1, generator=g) * 6.28
        img = (0.5 * (torch.cos(angle) * xx + torch.sin(angle) * yy)).expand(3, SIDE, SIDE).clone()
        y, x = torch.randint(1, SIDE - SQUARE - 1, (2,), generator=g).tolist()
        img[:, y : y + SQUARE, x : x + SQUARE] = COLOUR[key].view(3, 1, 1)
        out.append(img.clamp(-1, 1))
        keys.append(key)
        corners.append((y, x))
    return torch.stack(out), keys, corners


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    x, keys, _ = _scenes(32, 0)
    return trained_on(x, keys, LABELS, tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="module")
def scenes():
    return _scenes(6, 11)


def _square(corner: tuple[int, int]) -> np.ndarray:
    box = np.zeros((SIDE, SIDE), dtype=bool)
    y, x = corner
    box[y : y + SQUARE, x : x + SQUARE] = True
    return box


def test_the_threshold_keeps_what_stands_above_the_mean_and_a_flat_map_edits_nothing():
    diff = torch.zeros((2, 8, 8))
    diff[0, 2:4, 2:4] = 1.0
    m = masks_from(diff, TranslationOptions(mask_smooth=0.0, mask_threshold=1.0, mask_dilate=0))
    assert m[0].sum() == 4 and m[0, 2:4, 2:4].all()
    assert m[1].sum() == 0  # no difference anywhere: the labels are not told apart here, nothing is edited


def test_growing_takes_the_weak_cells_connected_to_a_core_and_not_an_isolated_weak_patch():
    diff = torch.zeros((2, 8, 8))  # the second map is flat: in the same batch, it still edits nothing
    diff[0, 1, 1] = 10.0  # the core: above the threshold (mean 0.25 x 20 = 5)
    diff[0, 1, 2:4] = 2.0  # weaker, touching the core: above the lower level (0.25 x 4 = 1)
    diff[0, 6, 6] = 2.0  # as weak, alone
    plain = masks_from(diff, TranslationOptions(mask_smooth=0.0, mask_threshold=20.0, mask_grow=None, mask_dilate=0))[0]
    both = masks_from(diff, TranslationOptions(mask_smooth=0.0, mask_threshold=20.0, mask_grow=4.0, mask_dilate=0))
    grown = both[0]
    assert plain.sum() == 1 and plain[1, 1] == 1
    assert grown.sum() == 3 and grown[1, 1:4].all() and grown[6, 6] == 0
    assert both[1].sum() == 0


def test_dilation_grows_the_mask_by_whole_cells_on_every_side_and_stops_at_the_border():
    diff = torch.zeros((1, 8, 8))
    diff[0, 3, 3] = 1.0
    diff[0, 0, 7] = 1.0
    m = masks_from(diff, TranslationOptions(mask_smooth=0.0, mask_threshold=1.0, mask_dilate=1))[0]
    assert m[2:5, 2:5].all() and m[0:2, 6:8].all()
    assert m.shape == (8, 8) and m.sum() == 9 + 4  # a 3 x 3 square, and the corner's 2 x 2 inside the image


@pytest.mark.parametrize("signal", ["difference", "source"])
def test_the_edit_mask_covers_the_square_and_little_else(trained, scenes, signal):
    x, keys, corners = scenes
    targets = [[k for k in LABELS if k != s] for s in keys]
    opts = TranslationOptions(mask_signal=signal, mask_dilate=0)  # the signal itself: dilation is tested above
    masks, evaluations = edit_masks(trained, x, keys, targets, opts)
    assert evaluations == len(x) * opts.mask_draws * 2  # the source's draws are shared by its targets
    inside = np.mean([m[0].numpy()[_square(c)].mean() for m, c in zip(masks, corners)])
    outside = np.mean([m[0].numpy()[~_square(c)].mean() for m, c in zip(masks, corners)])
    print(f"edit mask: {inside:.2f} of the square, {outside:.2f} of the rest")
    assert inside > 0.6 and outside < 0.2, (inside, outside)
    again, _ = edit_masks(trained, x, keys, targets, opts)
    assert all(torch.equal(a, b) for a, b in zip(masks, again))  # seeded draws: the same masks


def test_the_source_signal_marks_where_the_source_label_lives_and_the_difference_cannot_tell_the_direction(trained, scenes):
    """On a red square's image, where "red" denoises better than "blue" is the
    square; where "blue" (a wrong source) denoises better than "red" is
    almost nowhere. DiffEdit's difference is the same map both ways."""
    x, keys, corners = scenes
    other = {"red": "blue", "blue": "red"}
    swapped = [other[k] for k in keys]

    def inside(maps):
        return float(np.mean([m[0].numpy()[_square(c)].mean() for m, c in zip(maps, corners)]))

    right = difference_maps(trained, x, keys, [[k] for k in swapped], TranslationOptions())
    wrong = difference_maps(trained, x, swapped, [[k] for k in keys], TranslationOptions())
    print(f"source signal on the square: right source {inside(right):.4f}, wrong source {inside(wrong):.4f}")
    assert all((m >= 0).all() for m in right + wrong)  # kept where positive
    assert inside(right) > 10 * inside(wrong), (inside(right), inside(wrong))
    opts = TranslationOptions(mask_signal="difference")
    one = difference_maps(trained, x, keys, [[k] for k in swapped], opts)
    two = difference_maps(trained, x, swapped, [[k] for k in keys], opts)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(one, two))


def test_a_masked_translation_keeps_the_source_outside_its_mask_and_recolours_the_square(trained, scenes):
    x, keys, corners = scenes
    targets = [[k for k in LABELS if k != s] for s in keys]
    exact = TranslationOptions(steps=10, keep_outside="source")
    outs, result = translate(trained, x, keys, targets, exact, method="masked")
    assert result.masks is not None and result.masks.shape == (len(x), SIDE, SIDE)
    for i, o in enumerate(outs):
        outside = result.masks[i] == 0
        torch.testing.assert_close(o[0][:, outside], x[i][:, outside], atol=1e-5, rtol=0)
    # the square turns toward the target's colour: red minus blue channel flips sign
    def red_minus_blue(img, c):
        sq = torch.from_numpy(_square(c))
        return float((img[0] - img[2])[sq].mean())
    flipped = [np.sign(red_minus_blue(o[0], c)) != np.sign(red_minus_blue(x[i], c)) for i, (o, c) in enumerate(zip(outs, corners))]
    assert np.mean(flipped) >= 0.5, flipped
    # beside plain regeneration of the same images, far more of the layout outside the square is kept
    regen, none = translate(trained, x, keys, targets, exact, method="regenerate")
    assert none.masks is None

    def layout(translated):
        return np.nanmean([layout_figures(to_uint8(x[i]), to_uint8(t[0]), ~_square(c))[0] for i, (t, c) in enumerate(zip(translated, corners))])

    masked_ssim, regen_ssim = layout(outs), layout(regen)
    print(f"layout SSIM outside the square: masked {masked_ssim:.3f}, plain regeneration {regen_ssim:.3f}")
    assert masked_ssim > regen_ssim + 0.1 and masked_ssim > 0.8, (masked_ssim, regen_ssim)


def test_layout_mode_passes_a_label_wide_shift_and_keeps_the_pattern(trained, scenes):
    x, keys, _ = scenes
    targets = [[k for k in LABELS if k != s] for s in keys]
    outs, result = translate(trained, x, keys, targets, TranslationOptions(steps=10, keep_outside="layout"), method="masked")
    for i, o in enumerate(outs):
        outside = result.masks[i] == 0
        change = o[0][:, outside] - x[i][:, outside]
        # outside the mask only a constant per channel changed: the source's pattern is intact
        torch.testing.assert_close(change, change.mean(dim=1, keepdim=True).expand_as(change), atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", ["masked", "masked-pnp"])
def test_every_pair_keeps_its_own_mask_across_passes_and_an_image_without_targets(trained, scenes, method):
    """Several passes (3 pairs a pass at most), each mask matched to its own
    (image, target): outside each mask the output is that image, exactly."""
    x, keys, _ = scenes
    targets = [[k for k in LABELS if k != s] for s in keys]
    targets[2] = []  # nothing to translate this one into: no draws spent on it, no row
    opts = TranslationOptions(steps=6, keep_outside="source", batch_size=6)
    outs, result = translate(trained, x, keys, targets, opts, method=method)
    assert outs[2] == [] and result.masks.shape[0] == len(x) - 1
    alone, _ = edit_masks(trained, x, keys, targets, opts)
    flat = torch.cat([m for m in alone if len(m)])
    assert torch.equal(result.masks, flat)
    rows = [(i, j) for i, ts in enumerate(targets) for j in range(len(ts))]
    for (i, j), mask in zip(rows, result.masks):
        outside = mask == 0
        assert outside.any() and not outside.all()
        torch.testing.assert_close(outs[i][j][:, outside], x[i][:, outside], atol=1e-5, rtol=0)
