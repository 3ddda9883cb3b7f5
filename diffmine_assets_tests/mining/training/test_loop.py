"""Training: resume equals an uninterrupted run, divergence names the image."""

import pytest
import torch

from diffmine_assets.mining.config import TrainingOptions
from diffmine_assets.mining.denoisers.registry import load_denoiser
from diffmine_assets.mining.denoisers.tiny import TinyDenoiser
from diffmine_assets.mining.training.loop import TIMED_STEPS, TrainingDiverged, train
from diffmine_assets.mining.training.state import load_state

LABELS = ["a", "b"]


def data(n=6):
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
    keys = [LABELS[i % 2] for i in range(n)]
    names = [f"img{i}.png" for i in range(n)]
    return pixels, keys, names


OPTS = TrainingOptions(steps=6, batch_size=4, save_every=2, log_every=1, seed=5)


def weights(model):
    return {k: v.clone() for k, v in model.unet.state_dict().items()}


def test_resumed_training_equals_uninterrupted(tmp_path):
    pixels, keys, names = data()
    straight = TinyDenoiser(LABELS, 16, seed=1)
    r1 = train(straight, pixels, keys, names, OPTS, tmp_path / "a", meta={"m": 1})
    assert r1.resumed_from == 0 and r1.steps == 6 and len(r1.log) == 6

    resumed = TinyDenoiser(LABELS, 16, seed=1)
    part = train(resumed, pixels, keys, names, OPTS, tmp_path / "b", meta={"m": 1}, stop_after=3)
    assert part.steps == 3
    assert load_state(tmp_path / "b")[1]["step"] == 3  # saved at the interruption point too
    fresh = TinyDenoiser(LABELS, 16, seed=99)  # a new process: different init, state comes from disk
    r2 = train(fresh, pixels, keys, names, OPTS, tmp_path / "b", meta={"m": 1})
    assert r2.resumed_from == 3
    for k, v in weights(straight).items():
        torch.testing.assert_close(weights(fresh)[k], v, atol=1e-5, rtol=1e-4)
    assert [round(r["loss"], 5) for r in r2.log] == [round(r["loss"], 5) for r in r1.log]


def test_changed_data_or_options_start_afresh(tmp_path):
    pixels, keys, names = data()
    train(TinyDenoiser(LABELS, 16), pixels, keys, names, OPTS, tmp_path, meta={"data": "v1"}, stop_after=2)
    r = train(TinyDenoiser(LABELS, 16), pixels, keys, names, OPTS, tmp_path, meta={"data": "v2"})
    assert r.resumed_from == 0


def test_saved_state_is_safetensors_and_reloads(tmp_path):
    pixels, keys, names = data()
    m = TinyDenoiser(LABELS, 16)
    # without EMA the state's weights are the published ones (with it, see test_ema_is_what_gets_published)
    train(m, pixels, keys, names, OPTS.model_copy(update={"ema_decay": 0.0}), tmp_path, meta={})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["denoiser.json", "optimizer.safetensors", "scheduler", "train_state.json", "unet"]
    again = load_denoiser(tmp_path)
    assert again.labels == LABELS
    for k, v in weights(m).items():
        torch.testing.assert_close(weights(again)[k], v)


def test_non_finite_loss_names_the_image(tmp_path):
    pixels, keys, names = data()
    m = TinyDenoiser(LABELS, 16)
    with torch.no_grad():
        m.unet.class_embedding.weight[2] = float("nan")  # label "b" only
    opts = OPTS.model_copy(update={"label_dropout": 0.0})
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at step 1 on image img[135]\.png"):
        train(m, pixels, keys, names, opts, tmp_path, meta={})


def test_a_label_with_one_image_trains(tmp_path):
    pixels, _, _ = data(3)
    r = train(TinyDenoiser(["x", "y"], 16), pixels, ["x", "x", "y"], ["p", "q", "r"], OPTS, tmp_path, meta={})
    assert r.steps == 6 and all(row["loss"] == row["loss"] for row in r.log)


def test_added_labels_keep_old_embeddings():
    m = TinyDenoiser(LABELS, 16)
    before = m.unet.class_embedding.weight.detach().clone()
    assert m.add_labels(["b", "c"]) == ["c"]
    after = m.unet.class_embedding.weight.detach()
    torch.testing.assert_close(after[:3], before)
    torch.testing.assert_close(after[3], before[0])
    assert m.condition_ids(["c", None, "a"]).tolist() == [3, 0, 1]


def test_epochs_size_the_run_when_steps_is_null(tmp_path):
    pixels, keys, names = data()
    opts = OPTS.model_copy(update={"steps": None, "epochs": 2.0})
    r = train(TinyDenoiser(LABELS, 16), pixels, keys, names, opts, tmp_path, meta={})
    assert r.steps == r.planned_steps == 3  # ceil(2 epochs x 6 images / batch 4)


def test_time_budget_cuts_the_run_and_a_resume_keeps_the_cut(tmp_path):
    pixels, keys, names = data()
    # no warm-up: the budget is fixed after the first timed step
    opts = TrainingOptions.model_validate({**OPTS.model_dump(), "steps": 1000, "time_budget": "0.001s", "save_every": 1, "warmup_steps": 0})
    assert opts.time_budget == 0.001
    m = TinyDenoiser(LABELS, 16)
    r = train(m, pixels, keys, names, opts, tmp_path, meta={}, stop_after=2)
    state = load_state(tmp_path)[1]
    assert state["budgeted"] and state["total_steps"] == 2 == r.planned_steps  # one timed step, then the budget is spent
    assert r.unbudgeted_steps == 1000  # what was asked for is kept beside the cut, so the cut can be reported
    again = train(TinyDenoiser(LABELS, 16), pixels, keys, names, opts.model_copy(update={"time_budget": 3600.0}), tmp_path, meta={})
    assert again.steps == 2 and again.resumed_from == 2  # the recorded number of steps, not a new budget


def test_a_budget_is_sized_from_many_timed_steps_or_a_fortieth_of_itself(tmp_path):
    pixels, keys, names = data()
    base = {**OPTS.model_dump(), "steps": 1000, "save_every": 1000, "warmup_steps": 50}
    # an hour: its fortieth is never reached, so the length waits for TIMED_STEPS steps
    long = TrainingOptions.model_validate({**base, "time_budget": "1h"})
    train(TinyDenoiser(LABELS, 16), pixels, keys, names, long, tmp_path / "a", meta={}, stop_after=TIMED_STEPS)
    assert not load_state(tmp_path / "a")[1]["budgeted"]
    train(TinyDenoiser(LABELS, 16), pixels, keys, names, long, tmp_path / "b", meta={}, stop_after=TIMED_STEPS + 1)
    state = load_state(tmp_path / "b")[1]
    assert state["budgeted"] and state["total_steps"] == 1000  # an hour affords the 1,000 steps asked for
    # a budget whose fortieth (checks: 20) passes within the first steps (slow steps) is applied there
    short = TrainingOptions.model_validate({**base, "time_budget": "0.02s"})
    train(TinyDenoiser(LABELS, 16), pixels, keys, names, short, tmp_path / "c", meta={}, stop_after=4)
    state = load_state(tmp_path / "c")[1]
    assert state["budgeted"] and state["total_steps"] < 1000


def test_ema_is_what_gets_published(tmp_path):
    pixels, keys, names = data()
    opts = OPTS.model_copy(update={"ema_decay": 0.9, "learning_rate": 1e-2, "lr_schedule": "cosine", "warmup_steps": 2})
    m = TinyDenoiser(LABELS, 16, seed=1)
    train(m, pixels, keys, names, opts, tmp_path, meta={})
    raw = load_state(tmp_path)[0]  # the training state keeps the raw weights
    differs = [k for k, v in weights(m).items() if not torch.allclose(v, raw.unet.state_dict()[k])]
    assert differs  # the published model holds the average, not the last step's weights


def two_colour_data(n=32, size=16, seed=0):
    """Label a: a red square somewhere; label b: a blue one. What the label
    adds is the colour, which a noisy image hides at high noise."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.full((n, 3, size, size), 128, dtype=torch.uint8)
    keys = []
    for i in range(n):
        y, x = torch.randint(0, size - 6, (2,), generator=g).tolist()
        ch = 0 if i % 2 == 0 else 2
        pixels[i, ch, y : y + 6, x : x + 6] = 250
        keys.append("a" if i % 2 == 0 else "b")
    return pixels, keys, [f"img{i}.png" for i in range(n)]


def test_held_out_label_gain_sees_a_learnt_label_and_not_a_shuffled_one(tmp_path):
    from diffmine_assets.mining.training.diagnostics import label_gain
    from diffmine_assets.mining.tensors import to_model_range

    pixels, keys, names = two_colour_data()
    val, val_keys, _ = two_colour_data(16, seed=1)
    opts = TrainingOptions(steps=120, batch_size=16, learning_rate=2e-3, label_dropout=0.2, save_every=1000, log_every=1000, seed=0)
    shuffled_keys = [keys[i] for i in torch.randperm(len(keys), generator=torch.Generator().manual_seed(0)).tolist()]
    learnt, control = TinyDenoiser(LABELS, 16, seed=0), TinyDenoiser(LABELS, 16, seed=0)
    r = train(learnt, pixels, keys, names, opts, tmp_path / "a", meta={}, val_pixels=val, val_label_keys=val_keys)
    train(control, pixels, shuffled_keys, names, opts, tmp_path / "b", meta={})
    x = to_model_range(val)
    gain = label_gain(learnt, x, learnt.condition_ids(val_keys), bands=5)
    none = label_gain(control, x, control.condition_ids(val_keys), bands=5)
    assert [b.t_lo for b in gain] == [0, 200, 400, 600, 800]
    # t in [200, 400): noisy enough that the colour is hidden, clean enough
    # that the model can still use the label it was given
    assert gain[1].gain > 5e-4 and gain[1].gain > 3 * max(none[1].gain, 0.0)
    assert sum(b.gain for b in gain[1:]) > 3 * max(sum(b.gain for b in none[1:]), 0.0) + 1e-4
    # training stored the same diagnostic with the run
    assert r.diagnostics and r.diagnostics[-1]["step"] == 120 and len(r.diagnostics[-1]["bands"]) == 10


def test_a_finished_run_with_the_options_in_its_meta_resumes_without_training(tmp_path):
    # the options hold tuples (channels, focus_range) that come back from JSON as lists
    pixels, keys, names = data()
    meta = {"options": OPTS.model_dump()}
    first = train(TinyDenoiser(LABELS, 16), pixels, keys, names, OPTS, tmp_path, meta=meta)
    again = train(TinyDenoiser(LABELS, 16), pixels, keys, names, OPTS, tmp_path, meta=meta)
    assert first.steps == again.steps == again.resumed_from == 6


def test_checks_score_the_average_in_place_and_training_goes_on_from_the_raw_weights(tmp_path):
    """Held-out checks and losses swap the averaged weights into the model
    and put the raw ones back (a deep copy of the model, VAE and text
    encoder included, cost 4 GB a check at Stable Diffusion's size): a run
    checked after every step ends on exactly the raw and the published
    weights of the same run checked never."""
    pixels, keys, names = data(8)
    opts = OPTS.model_copy(update={"ema_decay": 0.9, "learning_rate": 1e-2, "warmup_steps": 2, "log_every": 100})
    plain = TinyDenoiser(LABELS, 16, seed=1)
    train(plain, pixels[:6], keys[:6], names[:6], opts, tmp_path / "plain", meta={})
    checked = TinyDenoiser(LABELS, 16, seed=1)
    result = train(checked, pixels[:6], keys[:6], names[:6], opts.model_copy(update={"diagnostic_every": 1, "log_every": 1}), tmp_path / "checked",
                   meta={}, val_pixels=pixels[6:], val_label_keys=keys[6:])
    assert len(result.diagnostics) == opts.steps and all(row["val_loss"] == row["val_loss"] for row in result.log)  # checked and scored each step
    assert all(torch.equal(v, weights(checked)[k]) for k, v in weights(plain).items())  # the same average published
    raw_plain, raw_checked = load_state(tmp_path / "plain")[0], load_state(tmp_path / "checked")[0]
    assert all(torch.equal(v, raw_checked.unet.state_dict()[k]) for k, v in raw_plain.unet.state_dict().items())  # the same raw weights


def test_the_average_covers_what_trains_and_a_swap_puts_the_raw_weights_back():
    from diffmine_assets.mining.training.averaging import Ema, averaged

    m = TinyDenoiser(LABELS, 16, seed=1)
    frozen = next(n for n, _ in m.module.named_parameters())
    dict(m.module.named_parameters())[frozen].requires_grad_(False)
    ema = Ema(m.module, 0.5)
    assert frozen not in ema.shadow and len(ema.shadow) == sum(p.requires_grad for p in m.module.parameters())
    with torch.no_grad():
        for p in m.module.parameters():
            p.add_(1.0)
    ema.update(m.module, step=1000)  # decay 0.5: the average is half a step behind
    raw, average = weights(m), {k: v.clone() for k, v in ema.shadow.items()}
    with averaged(m, ema) as view:
        inside = dict(view.module.named_parameters())
        assert all(torch.equal(inside[k], v) for k, v in average.items())
        assert not torch.equal(inside[next(iter(average))], raw[next(iter(average))])
    assert all(torch.equal(v, weights(m)[k]) for k, v in raw.items())  # the raw weights are back
    assert all(torch.equal(ema.shadow[k], v) for k, v in average.items())  # and the average in its place
    ema.load({**{k: v + 1 for k, v in ema.shadow.items()}, frozen: torch.zeros(1)})  # an older state's extra (frozen) entry is ignored
    assert frozen not in ema.shadow
