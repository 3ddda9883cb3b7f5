"""Translation across labels: inversion, Plug-and-Play injection,
reproducibility, the layout figures, and median-over-labels scoring."""

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F

from diffmine_assets.mining.config import PatchOptions, TranslationOptions
from diffmine_assets.mining.translation.parallel import TranslatedSet, parallel_locations
from diffmine_assets.mining.translation.inversion import Injection, invert, reconstruct, schedule, translate
from diffmine_assets.mining.evaluation.translations import background_mask, layout_figures
from diffmine_assets_tests.mining.translation.tiny_model import trained_on

LABELS = ["warm", "cold"]


def _scenes(n: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """Smooth scenes (a gradient and a square) tinted warm or cold."""
    g = torch.Generator().manual_seed(seed)
    out, keys = [], []
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    for i in range(n):
        key = LABELS[i % 2]
        angle = torch.rand(1, generator=g) * 6.28
        base = 0.5 * (torch.cos(angle) * xx + torch.sin(angle) * yy)
        img = base.expand(3, 16, 16).clone()
        tint = torch.tensor([0.5, 0.1, -0.4]) if key == "warm" else torch.tensor([-0.4, 0.1, 0.5])
        img += tint.view(3, 1, 1)
        y, x = torch.randint(2, 10, (2,), generator=g).tolist()
        img[:, y : y + 4, x : x + 4] = 0.9
        out.append(img.clamp(-1, 1))
        keys.append(key)
    return torch.stack(out), keys


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for a few seconds on warm and cold scenes."""
    x, keys = _scenes(32, 0)
    return trained_on(x, keys, LABELS, tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="module")
def scenes():
    return _scenes(4, 7)


def test_inverting_then_regenerating_under_the_same_label_returns_the_image(trained, scenes):
    x, keys = scenes
    back = reconstruct(trained, x, keys, TranslationOptions(steps=50))
    err = (back - x).abs().mean().item()
    # stated tolerance: mean absolute error under 0.05 on the [-1, 1] range
    # (2.5 % of it), where the scenes are 0.4 from a plain grey image on average
    assert err < 0.05, err
    # the same with fewer steps is worse: the tolerance measures the inversion
    coarse = reconstruct(trained, x, keys, TranslationOptions(steps=4))
    assert (coarse - x).abs().mean().item() > err


def test_inverted_latents_cover_every_regeneration_step(trained, scenes):
    x, _ = scenes
    opts = TranslationOptions(steps=10, strength=0.6)
    _, _, steps = schedule(trained, opts)
    inv = invert(trained, x, trained.condition_ids([None] * len(x)), opts)
    assert len(steps) == 6 and set(steps) <= set(inv.latents)
    assert max(inv.latents) == steps[0]
    assert inv.latents[steps[0]].std() > inv.latents[steps[-1]].std() * 0.9  # noisier toward the start


def test_translation_is_reproducible(trained, scenes):
    x, keys = scenes
    opts = TranslationOptions(steps=8)
    targets = [[k for k in LABELS if k != s] for s in keys]
    a, _ = translate(trained, x, keys, targets, opts)
    b, _ = translate(trained, x, keys, targets, opts)
    for ra, rb in zip(a, b):
        assert all(torch.equal(u, v) for u, v in zip(ra, rb))


def test_injection_changes_the_output_only_while_on(trained, scenes):
    x, _ = scenes
    t = torch.full((len(x),), 500, dtype=torch.long)
    src = trained.condition_ids(["warm"] * len(x))
    tgt = trained.condition_ids(["cold"] * len(x))
    noisy = trained.add_noise(x, torch.randn(x.shape, generator=torch.Generator().manual_seed(1)), t)
    other = noisy.flip(-1)  # the target pass sees a different image than the source pass
    batch, conds = torch.cat([noisy, other]), torch.cat([src, tgt])
    with torch.inference_mode():
        plain = trained.predict(batch, t.repeat(2), conds)
        with Injection(trained, 1, 2) as hooks:
            off = trained.predict(batch, t.repeat(2), conds)
            hooks.features = True
            on = trained.predict(batch, t.repeat(2), conds)
        after = trained.predict(batch, t.repeat(2), conds)
    n = len(x)
    torch.testing.assert_close(off, plain)  # hooks in place but off: nothing changes
    torch.testing.assert_close(after, plain)  # hooks removed on exit
    torch.testing.assert_close(on[:n], plain[:n])  # the source rows never change
    assert (on[n:] - plain[n:]).abs().mean() > 1e-3  # the target rows do


def test_pnp_without_injection_is_plain_regeneration_and_with_it_keeps_more_of_the_source(trained, scenes):
    x, keys = scenes
    targets = [[k for k in LABELS if k != s] for s in keys]
    none = TranslationOptions(steps=10, guidance=3.0, feature_injection=0.0, attention_injection=0.0)
    pnp_off, _ = translate(trained, x, keys, targets, none, method="pnp")
    regen, _ = translate(trained, x, keys, targets, none, method="regenerate")
    for a, b in zip(pnp_off, regen):
        torch.testing.assert_close(a[0], b[0], atol=1e-4, rtol=1e-4)
    strong = none.model_copy(update={"feature_injection": 1.0, "attention_injection": 1.0})
    pnp_on, _ = translate(trained, x, keys, targets, strong, method="pnp")
    # "keeps more of the source": the layout figure diffmine eval uses (SSIM of standardised luminance), higher with injection
    def layout(outs):
        def u8(t):
            return ((t.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        return np.mean([layout_figures(u8(x[i]), u8(o[0]), np.ones((16, 16), dtype=bool))[0] for i, o in enumerate(outs)])

    plain, injected = layout(regen), layout(pnp_on)
    print(f"layout SSIM: plain regeneration {plain:.3f}, PnP {injected:.3f}")
    assert injected > plain + 0.05, (injected, plain)


def test_layout_ssim_ignores_a_tint_and_the_element_boxes():
    rng = np.random.default_rng(0)
    coarse = rng.normal(0, 1, (4, 4))
    smooth = np.kron(coarse, np.ones((8, 8)))
    smooth = F.avg_pool2d(torch.tensor(smooth)[None, None], 5, 1, 2).numpy()[0, 0]
    img = np.clip(np.stack([smooth * 40 + 120] * 3, -1), 0, 255).astype(np.uint8)
    tinted = np.clip(img.astype(int) + np.array([40, 0, -30]), 0, 255).astype(np.uint8)
    mask = np.ones((32, 32), dtype=bool)
    ssim_same, _ = layout_figures(img, img, mask)
    ssim_tint, psnr_tint = layout_figures(img, tinted, mask)
    assert ssim_same == pytest.approx(1.0)
    assert ssim_tint > 0.95 and psnr_tint < 25
    other = np.ascontiguousarray(img[::-1, ::-1])
    assert layout_figures(img, other, mask)[0] < 0.5
    # a changed element inside its box does not count against the layout
    changed = img.copy()
    changed[8:16, 8:16] = 255
    boxes = pl.DataFrame({"image_id": ["a"], "x0": [16], "y0": [16], "x1": [32], "y1": [32], "role": ["label"]})
    outside = background_mask(boxes, "a", 64, 64, 32)
    assert not outside[8:16, 8:16].any() and outside[0, 0]
    assert layout_figures(img, changed, outside)[0] > layout_figures(img, changed, mask)[0]


def test_a_location_scores_the_median_over_labels():
    labels = ["a", "b", "c"]
    maps = {k: np.zeros((16, 16), dtype=np.float32) for k in labels}
    for k in labels:  # typical under every label: top left
        maps[k][0:4, 0:4] = 1.0
    maps["a"][8:12, 8:12] = 10.0  # very typical under one label only
    s = TranslatedSet("img", "a", 16, 16, {k: f"{k}.png" for k in labels}, maps)
    table = parallel_locations([s], labels, PatchOptions(window_px=4, stride_px=4, per_image=2), top=2)
    first = table.filter(pl.col("location") == 1)
    assert first["x0"].to_list() == [0, 0, 0] and first["median_typicality"][0] == pytest.approx(1.0)
    assert sorted(first["label_key"].to_list()) == labels
    second = table.filter(pl.col("location") == 2)
    # the one-label location ranks below: its median is 0, whatever its maximum
    assert second["median_typicality"][0] < first["median_typicality"][0]
