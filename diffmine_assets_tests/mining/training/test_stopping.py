"""Issue 28: the length of a training follows the held-out evidence, within
its time ceiling, and the best check's weights are published."""

import math

import torch

from diffmine_assets.mining.config import TrainingOptions
from diffmine_assets.mining.denoisers.tiny import TinyDenoiser
from diffmine_assets.mining.precision import resolve_precision
from diffmine_assets.mining.tensors import to_model_range
from diffmine_assets.mining.training.diagnostics import BandGain, held_out_accuracy, label_gain
from diffmine_assets.mining.training.loop import train
from diffmine_assets.mining.training.state import BEST_FILE, load_state, snapshots_dir
from diffmine_assets.mining.training.stopping import Check, EvidenceRule, checks_from, evidence_count, reads_evidence


def check(step, accuracy, gain, stderr=0.01):
    return Check(step, accuracy, gain, stderr)


def test_a_check_is_better_only_by_accuracy_or_by_a_gain_above_its_noise():
    rule = EvidenceRule(patience=2, min_steps=0)
    assert not rule.observe(check(0, 0.9, 1.0)) and rule.best is None  # the untrained start is never published, however lucky
    assert rule.observe(check(1, 0.25, 0.0))  # the first check is the best so far
    assert rule.observe(check(10, 0.50, -0.5))  # higher accuracy wins, whatever the gain
    assert rule.observe(check(11, 0.50, 0.0))  # equal accuracy, a gain higher by more than its noise
    assert not rule.observe(check(20, 0.50, 0.005))  # equal accuracy, a gain rise inside its standard error: a plateau
    assert rule.stop_reason(20) is None  # one check without progress, patience 2
    assert rule.observe(check(30, 0.50, 0.02))  # equal accuracy, a gain rise above its noise
    assert not rule.observe(check(40, 0.45, 1.0))  # lower accuracy is not better, whatever the gain
    assert not rule.observe(check(50, 0.50, 0.02))
    reason = rule.stop_reason(50)
    assert reason.startswith("evidence: 2 checks") and "since step 30" in reason
    # the minimum length holds off the stop
    late = EvidenceRule.from_state({**rule.state(), "min_steps": 60})
    assert late.stop_reason(50) is None and late.best == rule.best and late.since_best == 2
    # one label: no accuracy to read (nan), the gain alone decides
    one = EvidenceRule(patience=1, min_steps=0)
    assert one.observe(check(1, math.nan, 0.0)) and one.observe(check(2, math.nan, 0.5)) and not one.observe(check(3, math.nan, 0.505))


def test_the_gain_read_is_the_accuracy_range_with_the_standard_error_of_its_mean():
    bands = [BandGain(i * 100, (i + 1) * 100, gain=float(i), stderr=0.3, null_loss=1.0) for i in range(10)]
    c = Check.of(7, bands, 0.5, num_timesteps=1000)
    assert c.gain == (1 + 2 + 3 + 4) / 4  # the bands of t in [100, 500)
    assert abs(c.stderr - math.sqrt(4 * 0.3**2) / 4) < 1e-12


def colours(n, seed):
    """Label a: reddish noise, label b: bluish noise (learnable at once)."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 120, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
    keys = ["a" if i % 2 == 0 else "b" for i in range(n)]
    for i, k in enumerate(keys):
        pixels[i, 0 if k == "a" else 2] += 130
    return pixels, keys


class Clock:
    """The training loop's clock, advancing a fixed 0.25 s per reading: the
    steps a time ceiling affords are then the same on any machine and load."""

    def __init__(self):
        self.t = 0.0

    def monotonic(self) -> float:
        self.t += 0.25
        return self.t


def test_an_evidence_run_publishes_its_best_check_and_says_why_it_stopped(tmp_path, monkeypatch):
    from diffmine_assets.mining.training import loop

    monkeypatch.setattr(loop, "time", Clock())
    pixels, keys = colours(24, 0)
    val, val_keys = colours(8, 1)
    opts = TrainingOptions(batch_size=8, learning_rate=3e-3, warmup_steps=2, time_budget="15s", checks=6, patience=2, min_share=0.0,
                           snapshots=0, save_every=5, log_every=5, seed=3)
    assert opts.by_evidence
    model = TinyDenoiser(["a", "b"], 16, channels=(16, 16), seed=0)
    r = train(model, pixels, keys, [f"{i}.png" for i in range(24)], opts, tmp_path / "state", meta={}, val_pixels=val, val_label_keys=val_keys)
    checks = checks_from(r.diagnostics, model.num_train_timesteps)
    assert checks[0].step == 0 and len(checks) >= 3  # the untrained start, then checks along the ceiling
    assert r.finished and r.unbudgeted_steps == 0 and r.steps <= r.planned_steps
    assert r.stopped_by.startswith("evidence: ") or r.stopped_by.startswith("the time ceiling"), r.stopped_by
    if r.stopped_by.startswith("evidence"):
        assert r.steps < r.planned_steps
    # the published weights are the best check's: reading them again gives its figures exactly
    best = [c for c, d in zip(checks, r.diagnostics) if d.get("best")][-1]
    assert r.best_step == best.step and best.accuracy > 0.5  # the colours are learnt
    x, cond, dtype = model.encode(to_model_range(val)), model.condition_ids(val_keys), resolve_precision(opts.precision)
    again = Check.of(best.step, label_gain(model, x, cond, seed=opts.seed, dtype=dtype), held_out_accuracy(model, x, cond, seed=opts.seed, dtype=dtype),
                     model.num_train_timesteps)
    assert again.accuracy == best.accuracy
    torch.testing.assert_close(torch.tensor(again.gain), torch.tensor(best.gain), rtol=1e-4, atol=1e-7)
    # the state says it is done: called again, nothing trains and the same weights come back
    state = load_state(tmp_path / "state")[1]
    assert state["stopped_by"] == r.stopped_by and (tmp_path / "state" / BEST_FILE).exists()
    model2 = TinyDenoiser(["a", "b"], 16, channels=(16, 16), seed=9)
    r2 = train(model2, pixels, keys, [f"{i}.png" for i in range(24)], opts, tmp_path / "state", meta={}, val_pixels=val, val_label_keys=val_keys)
    assert (r2.resumed_from, r2.steps, r2.best_step, r2.stopped_by) == (r.steps, r.steps, r.best_step, r.stopped_by)
    for k, v in model.unet.state_dict().items():
        torch.testing.assert_close(model2.unet.state_dict()[k], v)


def test_without_held_out_images_the_length_falls_back_to_fixed_epochs(tmp_path):
    pixels, keys = colours(8, 0)
    opts = TrainingOptions(batch_size=8, snapshots=0, warmup_steps=1)
    r = train(TinyDenoiser(["a", "b"], 16, channels=(16, 16)), pixels, keys, [f"{i}" for i in range(8)], opts, tmp_path, meta={})
    assert r.steps == r.planned_steps == 60  # 60 epochs of one batch
    assert "no held-out image" in r.stopped_by and r.diagnostics == []


def test_a_checkpoint_and_its_control_hold_out_the_same_evidence_images_and_stop_at_the_same_step(tmp_path):
    import json

    import polars as pl

    from diffmine_assets.mining.config import parse_config
    from diffmine_assets.mining.datasets.ingest import ingest
    from diffmine_assets.mining.evaluation.controls import control_recipe, fit_shuffled_control
    from diffmine_assets.mining.training.checkpoints import evidence_ids_of, fit
    from diffmine_assets.mining.training.stopping import evidence_split

    spec = parse_config({"datasets": [{"name": "b", "kind": "builtin", "options": {"images_per_label": 14, "seed": 3, "resolution": 16},
                                       "training": {"time_budget": "3s", "checks": 4, "patience": 1, "min_share": 0, "batch_size": 16, "channels": [16, 16],
                                                    "snapshots": 0, "save_every": 1000, "log_every": 1000}}]}).datasets[0]
    images = ingest("b", spec, tmp_path / "_f").images
    train_rows = images.filter(pl.col("split") == "train")
    kept, evidence = evidence_split(train_rows, spec.training.seed)
    assert len(evidence) == 8 and len(kept) + 8 == len(train_rows) and not set(evidence["image_id"]) & set(kept["image_id"])
    assert set(kept["label_key"]) == set(train_rows["label_key"])  # no label loses its training images
    one_each = train_rows.filter(pl.int_range(pl.len()).over("label_key") == 0)  # a label with one training image keeps it
    assert set(evidence_split(pl.concat([one_each, train_rows.filter(pl.col("label_key") == "amber")]).unique("image_id"), 0)[0]["label_key"]) \
        == set(train_rows["label_key"])
    assert evidence_split(train_rows.head(39), 0)[1] is None  # too few to spare: no evidence, the fixed fallback

    fitted = fit("b", images, spec.training, 16, "v1", tmp_path / "ckpt")
    row = fitted.table.row(0, named=True)
    assert row["stopped_by"] and row["unbudgeted_steps"] == 0
    assert row["steps"] == fitted.result.best_step <= row["trained_steps"] <= row["planned_steps"]
    assert evidence_ids_of(fitted.path) == evidence["image_id"].to_list()
    # the control: the model's schedule, stopped at its published step, without the model's evidence images
    # (its shuffled labels would choose others)
    recipe, stop_after = control_recipe(spec.training, row)
    control = fit_shuffled_control("b", images, recipe, 16, "v1", tmp_path / "controls", stop_after=stop_after, evidence_ids=evidence_ids_of(fitted.path))
    assert (control.result.steps, control.result.planned_steps) == (row["steps"], row["planned_steps"])
    assert evidence_ids_of(control.path) == evidence["image_id"].to_list()
    assert json.loads((control.path / "training.json").read_text())["evidence_images"] == 8


def test_evidence_sets_the_length_only_without_a_fixed_length_and_with_images_to_read_it_from():
    length_free = TrainingOptions(steps=None, epochs=None)
    early = TrainingOptions(steps=None, epochs=None, patience=3)
    assert reads_evidence(length_free.by_evidence, length_free.stops_early, 500, 50)
    assert not reads_evidence(length_free.by_evidence, length_free.stops_early, 500, 0)  # no val split: the fixed fallback
    fixed = TrainingOptions(epochs=150)
    assert not reads_evidence(fixed.by_evidence, fixed.stops_early, 500, 50)
    # an early-stopping rule reads its checks from the training images, not the val split
    assert evidence_count(20) == 0 and not reads_evidence(early.by_evidence, early.stops_early, 20, 50)
    assert evidence_count(500) > 0 and reads_evidence(early.by_evidence, early.stops_early, 500, 0)


def test_the_checks_take_at_most_their_share_of_the_ceiling(tmp_path, monkeypatch):
    from diffmine_assets.mining.training import loop

    # 20 checks of 6.3 s were half of a 3-minute photo-shapes run: a tenth of 180 s buys 2
    assert loop.checks_within(180, 6.3, 20) == 2 and loop.checks_within(660, 6.3, 20) == 10 and loop.checks_within(900, 1.0, 20) == 20
    assert loop.checks_within(10, 60, 20) == 2  # a curve keeps its two ends however dear
    monkeypatch.setattr(loop, "time", Clock())  # a check reads the clock twice: 0.25 s each
    pixels, keys = colours(24, 0)
    val, val_keys = colours(8, 1)
    opts = TrainingOptions(batch_size=8, warmup_steps=2, time_budget="10s", checks=20, snapshots=0, save_every=5, log_every=5)
    r = train(TinyDenoiser(["a", "b"], 16, channels=(16, 16), seed=0), pixels, keys, [f"{i}.png" for i in range(24)], opts, tmp_path / "state",
              meta={}, val_pixels=val, val_label_keys=val_keys)
    steps = [d["step"] for d in r.diagnostics]
    # 0.1 x 10 s / 0.25 s: 4 checks along the run (the last at its end), after the untrained start's
    assert steps[0] == 0 and len(steps) == 5 and steps[-1] == r.steps, steps
    assert load_state(tmp_path / "state")[1]["checks"] == 4


class SlowingClock(Clock):
    """A machine that slows to a third of its speed after its first readings:
    a run sized on its first steps would overrun its ceiling threefold."""

    def __init__(self, fast_readings: int):
        super().__init__()
        self.readings, self.fast = 0, fast_readings

    def monotonic(self) -> float:
        self.readings += 1
        self.t += 0.25 if self.readings <= self.fast else 0.75
        return self.t


def test_each_check_sizes_what_is_left_of_the_ceiling_so_a_slowing_run_ends_within_it(tmp_path, monkeypatch):
    """The 600-image photo-shapes run's steps slowed 5 % after they were
    timed and its fit took 736 s of a 702-s ceiling: each check re-sizes the
    remaining steps from the time steps and checks have taken so far."""
    from diffmine_assets.mining.training import loop

    assert loop.replanned_total(100, 40, 30, 100, 100, 2.0, 3) == 100 + int((100 - 40 - 6) / 0.3)
    assert loop.replanned_total(100, 99, 30, 100, 100, 2.0, 3) == 101  # past the ceiling: one more step, to end at a check
    clock = SlowingClock(fast_readings=20)
    monkeypatch.setattr(loop, "time", clock)
    pixels, keys = colours(24, 0)
    val, val_keys = colours(8, 1)
    opts = TrainingOptions(batch_size=8, warmup_steps=2, time_budget="20s", checks=5, snapshots=4, save_every=1000, log_every=1)
    r = train(TinyDenoiser(["a", "b"], 16, channels=(16, 16), seed=0), pixels, keys, [f"{i}.png" for i in range(24)], opts, tmp_path / "state",
              meta={}, val_pixels=val, val_label_keys=val_keys)
    # the snapshots follow the re-sized total: the start and 4 more, none twice, the last at the end
    taken = sorted(int(d.name.split("-")[1]) for d in snapshots_dir(tmp_path / "state").iterdir())
    assert len(taken) == 5 and taken[0] == 0 and taken[-1] == r.steps, taken
    resized = [d["planned_steps"] for d in r.diagnostics if "planned_steps" in d]
    assert resized and resized[-1] == r.steps == r.planned_steps  # it ended where the last re-sizing said
    assert len(resized) >= 2 and resized == sorted(resized, reverse=True)  # the machine only slowed: each re-sizing shrank the run
    # the whole fit, set-up and checks included, ends near its ceiling (the
    # drift after the last re-sizing is not seen); sized once on its first
    # steps it would have run 44 steps and about 48 s
    assert r.seconds <= 20 * 1.15, (r.seconds, resized)
    # no check falls within half an interval of the end's own
    steps = [d["step"] for d in r.diagnostics]
    assert steps[-1] == r.steps and all(b - a >= 2 for a, b in zip(steps, steps[1:])), steps
    assert len(steps) <= opts.checks + 1  # re-sizing never adds checks to those planned


def test_a_resized_run_resumes_where_its_checks_and_its_ceiling_left_off(tmp_path, monkeypatch):
    """Killed after a re-sizing, a run resumes with its checks' spacing, its
    snapshots and the time its ceiling had spent, and goes on re-sizing."""
    from diffmine_assets.mining.training import loop

    clock = SlowingClock(fast_readings=20)
    monkeypatch.setattr(loop, "time", clock)
    pixels, keys = colours(24, 0)
    val, val_keys = colours(8, 1)
    opts = TrainingOptions(batch_size=8, warmup_steps=2, time_budget="20s", checks=5, snapshots=4, save_every=1, log_every=1)
    args = (pixels, keys, [f"{i}.png" for i in range(24)], opts, tmp_path / "state")
    first = train(TinyDenoiser(["a", "b"], 16, channels=(16, 16), seed=0), *args, meta={}, val_pixels=val, val_label_keys=val_keys, stop_after=12)
    saved = load_state(tmp_path / "state")[1]
    assert first.steps == 12 and saved["last_check"] == max(d["step"] for d in first.diagnostics)
    assert saved["ceiling_spent_s"] > 0 and saved["every"] > 0
    clock.t += 1000.0  # another process: its clock reads otherwise
    r = train(TinyDenoiser(["a", "b"], 16, channels=(16, 16), seed=0), *args, meta={}, val_pixels=val, val_label_keys=val_keys)
    steps = [d["step"] for d in r.diagnostics]
    assert r.resumed_from == 12 and steps[-1] == r.steps and len(steps) <= opts.checks + 1, steps
    # the ceiling's clock went on from the saved run's: the whole run, both
    # processes, near 20 s (the second pays its own set-up; counted alone it
    # would read about 8 s)
    assert saved["ceiling_spent_s"] < r.seconds <= 20 * 1.25, r.seconds
    taken = sorted(int(d.name.split("-")[1]) for d in snapshots_dir(tmp_path / "state").iterdir())
    assert len(taken) == 5 and taken[-1] == r.steps, taken
    assert "time ceiling (20 s" in r.stopped_by
