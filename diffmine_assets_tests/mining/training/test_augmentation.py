"""`shift: auto` shifts the training images of a run long enough to
memorise them, says why, and a resumed run augments as the uninterrupted one."""

import torch

from diffmine_assets.mining.config import TrainingOptions
from diffmine_assets.mining.denoisers.tiny import TinyDenoiser
from diffmine_assets.mining.training.augmentation import AUTO_PASSES, Augmentation, augment, augmentation_for
from diffmine_assets.mining.training.loop import train
from diffmine_assets.mining.training.state import load_state
from diffmine_assets_tests.mining.training.test_loop import LABELS, data, weights


def test_auto_shifts_from_its_passes_on_and_waits_for_a_budget_to_fix_the_steps():
    n, batch = 540, 64
    below = augmentation_for(False, "auto", int(AUTO_PASSES * n / batch) - 1, batch, n)
    at = augmentation_for(False, "auto", int(AUTO_PASSES * n / batch) + 1, batch, n)
    assert not below.flip and below.shift == 0 and "199 passes < 200" in below.why
    assert at.shift == 0.1 and not at.flip and "200 passes >= 200" in at.why
    assert augmentation_for(True, "auto", None, batch, n) == Augmentation(True, 0.0, "shift auto: decided once the time budget fixes the steps")
    assert augmentation_for(False, 0.25, 1, batch, n) == Augmentation(False, 0.25)  # given: taken as given, however short the run


def test_a_shift_moves_the_image_whole_with_reflected_borders_and_no_augmentation_draws_nothing():
    x = torch.arange(2 * 3 * 10 * 10, dtype=torch.float32).view(2, 3, 10, 10)
    g = torch.Generator().manual_seed(0)
    before = g.get_state()
    assert torch.equal(augment(x, Augmentation(False, 0.0), g), x) and torch.equal(g.get_state(), before)
    out = augment(x, Augmentation(False, 0.2), torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(2):
        windows = [padded[i, :, y : y + 10, z : z + 10] for y in range(5) for z in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert not torch.equal(out, x)  # seed 3 moves at least one of the two


def test_a_run_of_many_passes_is_shifted_says_why_and_resumes_shifted(tmp_path):
    pixels, keys, names = data()  # 6 images: 40 steps of 30 are 200 passes
    many = TrainingOptions(steps=40, batch_size=30, save_every=10, log_every=10, seed=5, warmup_steps=5)
    shifted = TinyDenoiser(LABELS, 16, seed=1)
    r = train(shifted, pixels, keys, names, many, tmp_path / "a", meta={})
    assert r.augmentation.describe() == "shifts up to 0.1 of the side (shift auto: 200 passes >= 200)"
    plain = TinyDenoiser(LABELS, 16, seed=1)
    off = train(plain, pixels, keys, names, many.model_copy(update={"shift": 0.0}), tmp_path / "b", meta={})
    assert off.augmentation.describe() == "none"
    assert any(not torch.equal(v, weights(plain)[k]) for k, v in weights(shifted).items())  # the shifts changed what was learnt

    train(TinyDenoiser(LABELS, 16, seed=1), pixels, keys, names, many, tmp_path / "c", meta={}, stop_after=20)
    assert load_state(tmp_path / "c")[1]["augmentation"]["shift"] == 0.1
    resumed = TinyDenoiser(LABELS, 16, seed=99)
    again = train(resumed, pixels, keys, names, many, tmp_path / "c", meta={})
    assert again.resumed_from == 20 and again.augmentation == r.augmentation
    for k, v in weights(shifted).items():
        torch.testing.assert_close(weights(resumed)[k], v, atol=1e-5, rtol=1e-4)


def test_a_budgeted_run_resumed_after_its_decision_keeps_it(tmp_path):
    pixels, keys, names = data()
    # a budget that cuts nothing: the steps (40 of 30 over 6 images, 200 passes) are known, and shift auto decided, at the 6th step
    opts = TrainingOptions(steps=40, batch_size=30, time_budget=1e6, save_every=10, log_every=10, warmup_steps=6, seed=5)
    straight = TinyDenoiser(LABELS, 16, seed=1)
    r = train(straight, pixels, keys, names, opts, tmp_path / "a", meta={})
    assert r.augmentation.describe() == "shifts up to 0.1 of the side (shift auto: 200 passes >= 200)" and r.augmentation.shift == 0.1
    train(TinyDenoiser(LABELS, 16, seed=1), pixels, keys, names, opts, tmp_path / "b", meta={}, stop_after=20)
    assert load_state(tmp_path / "b")[1]["budgeted"]
    resumed = TinyDenoiser(LABELS, 16, seed=99)
    again = train(resumed, pixels, keys, names, opts, tmp_path / "b", meta={})
    assert again.resumed_from == 20 and again.augmentation == r.augmentation  # the saved decision, not one of its own
    for k, v in weights(straight).items():
        torch.testing.assert_close(weights(resumed)[k], v, atol=1e-5, rtol=1e-4)


def test_a_time_budget_decides_auto_once_it_fixes_the_steps(tmp_path):
    pixels, keys, names = data()
    opts = TrainingOptions(steps=1000, batch_size=4, time_budget=0.001, save_every=1, log_every=1, warmup_steps=0, seed=5)
    r = train(TinyDenoiser(LABELS, 16), pixels, keys, names, opts, tmp_path, meta={}, stop_after=2)
    state = load_state(tmp_path)[1]
    assert state["budgeted"] and state["total_steps"] == 2
    # 2 steps of 4 over 6 images, not the 1,000 steps asked for (667 passes, which would have shifted)
    assert state["augmentation"] == {"flip": False, "shift": 0.0, "why": "shift auto: 1 passes < 200"}
    assert r.augmentation.describe() == "none (shift auto: 1 passes < 200)"
