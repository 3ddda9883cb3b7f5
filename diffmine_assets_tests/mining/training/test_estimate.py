"""The run estimate: counts of work and what is left for training."""

import re

import pytest

from diffmine_assets.mining.config import TrainingOptions, TranslationOptions, TypicalityOptions
from diffmine_assets.mining.training.estimate import TARGET_MARGIN, BudgetTooShort, estimate_run, evaluation_evaluations, training_budget, typicality_evaluations


def test_typicality_work_is_counted_as_the_engine_spends_it():
    opts = TypicalityOptions(n_samples=32, groups=8, matrix_samples=8, matrix_finalists=3, label_matrix="all", matrix_t_min=None, matrix_t_max=None)
    # own label and null at N for every image, plus the matrix: 9 other labels
    # at 8 samples and 2 more finalists at the other 24
    assert typicality_evaluations(100, 10, 10, opts) == 100 * 64 + 100 * (9 * 8 + 2 * 24)
    held = opts.model_copy(update={"label_matrix": "held-out"})
    assert typicality_evaluations(100, 10, 10, held) == 100 * 64 + 10 * (9 * 8 + 2 * 24)
    assert typicality_evaluations(100, 10, 1, opts) == 100 * 64  # one label: no matrix
    # a matrix on its own timesteps scores the own label and the null again on its draws
    own_range = held.model_copy(update={"matrix_t_min": 0.05, "matrix_t_max": 0.3})
    assert typicality_evaluations(100, 10, 10, own_range) == 100 * 64 + 10 * (64 + 9 * 8 + 2 * 24)
    assert typicality_evaluations(100, 10, 1, own_range) == 100 * 64
    assert TypicalityOptions(label_matrix=False).label_matrix == "none" and TypicalityOptions(label_matrix=True).label_matrix == "all"


def test_estimate_and_budget_from_a_calibration():
    training = TrainingOptions(steps=None, epochs=10, batch_size=50)
    est = estimate_run(["a", "b"], images=1100, held_out=100, train_images=1000, resolution=16, training=training,
                       typicality=TypicalityOptions(), calibration=(0.5, 1000.0))
    assert est.training_steps == 200 and est.training_s == 100.0
    assert est.typicality_evaluations == typicality_evaluations(1100, 100, 2, TypicalityOptions())
    assert est.total_s == est.training_s + est.typicality_s + est.other_s and est.translation_s == 0
    # translations: per label its 8 most typical images, 20 of 25 steps, into the other label, each output scored
    tr = estimate_run(["a", "b"], 1100, 100, 1000, 16, training, TypicalityOptions(), calibration=(0.5, 1000.0), translation=TranslationOptions())
    # masked (the default): the mask's 10 draws under the source and the target, then plain regeneration's 2 rows a step
    assert tr.translation_evaluations == 2 * 8 * (20 + 10 * 2 + 1 * (20 * 2 + 32 * 3))
    pnp = estimate_run(["a", "b"], 1100, 100, 1000, 16, training, TypicalityOptions(), calibration=(0.5, 1000.0), translation=TranslationOptions(method="pnp"))
    assert pnp.translation_evaluations == 2 * 8 * (20 + 1 * (20 * 3 + 32 * 3))
    # with many labels the images per label shrink, so translations grow with the labels, not their square
    many = TranslationOptions()
    assert [many.images_for(n) for n in (2, 5, 10, 40)] == [8, 8, 3, 2]
    # the report run's evaluation scores every translated source untranslated under the same pair: 3 rows at N
    assert evaluation_evaluations(2, 1100, TranslationOptions(), TypicalityOptions()) == 2 * 8 * 1 * TypicalityOptions().n_samples * 3
    assert tr.other_s == pytest.approx(est.other_s + evaluation_evaluations(2, 1100, TranslationOptions(), TypicalityOptions()) / 1000.0)
    assert tr.total_s == pytest.approx(est.total_s + tr.translation_s + tr.other_s - est.other_s) and "translation" in tr.describe()
    assert "min in all" in est.describe()
    # a whole-run budget leaves training what typicality and the rest do not take, less the margin kept for what is not estimated
    assert training_budget(est.total_s, est) == int(est.total_s * (1 - TARGET_MARGIN) - (est.total_s - est.training_s))
    assert training_budget(est.total_s, est) < est.training_s
    # a budget the rest of the run alone overruns is refused, naming the figures
    with pytest.raises(BudgetTooShort, match=r"too short .* give at least \d+ s") as refused:
        training_budget(1.0, est)
    # and the budget it names is one that is taken
    need = int(re.search(r"give at least (\d+) s", str(refused.value)).group(1))
    assert training_budget(float(need), est) >= need / 10
    # a run that mines no label (--select checkpoint) gives training the whole budget, less what is spent
    assert training_budget(100.0, est, share=0.0, spent_s=10.5) == int(100 * (1 - TARGET_MARGIN) - 10.5)
    capped = estimate_run(["a", "b"], 1100, 100, 1000, 16, training.model_copy(update={"time_budget": 30}), TypicalityOptions(), calibration=(0.5, 1000.0))
    assert capped.training_steps == 60 and capped.training_s == 30
    # issue 28: with neither steps nor epochs the training's ceiling is what run_target leaves the rest of the run
    evidence = TrainingOptions(batch_size=50, run_target="10m")
    ev = estimate_run(["a", "b"], 1100, 100, 1000, 16, evidence, TypicalityOptions(), calibration=(0.5, 1000.0))
    assert ev.training_s == int(600 * (1 - TARGET_MARGIN) - (ev.typicality_s + ev.other_s)) and ev.training_steps == int(ev.training_s / 0.5)
    assert ev.total_s == pytest.approx(600 * (1 - TARGET_MARGIN), abs=1)
    # a target the other stages alone overrun: training still gets a tenth of it (the estimate says it overruns)
    short = estimate_run(["a", "b"], 1100, 100, 1000, 16, evidence.model_copy(update={"run_target": 5.0}), TypicalityOptions(), calibration=(0.5, 1000.0))
    assert short.training_s == 1.0 and short.total_s > 5


def test_calibration_runs_the_real_model():
    from diffmine_assets.mining.training.estimate import calibrate

    per_step, rate = calibrate(["a", "b"], 16, TrainingOptions(batch_size=4), TypicalityOptions(batch_size=8), steps=1)
    assert 0 < per_step < 30 and rate > 0


def test_a_compute_bound_model_is_timed_at_batches_one_and_two_and_the_line_extended(monkeypatch):
    """Stable Diffusion at 512 px on a CPU: a whole batch of 32 would take
    minutes to time. The line through batches 1 and 2 keeps the optimizer's
    fixed cost out of the per-image slope (whole UNet, measured: 18.2 s,
    32.6 s, and 53.5 s at batch 4, where the line says 61.4 and 4 x 18.2 = 72.8)."""
    from diffmine_assets.mining.training import estimate

    assert estimate._extended(18.2, 32.6, 4) == pytest.approx(61.4)
    assert estimate._extended(4.0, 3.9, 8) == 4.0  # never below batch 1's time
    monkeypatch.setattr(estimate, "COMPUTE_BOUND_S", 0.0)  # the tiny model through the compute-bound path
    per_step, rate = estimate.calibrate(["a", "b"], 16, TrainingOptions(batch_size=4), TypicalityOptions(batch_size=8), steps=1)
    assert 0 < per_step < 30 and rate > 0


def test_one_stalled_batch_one_step_does_not_make_a_small_model_compute_bound():
    """Under load one step of the tiny model once took longer than the bound,
    the run was extended as Stable Diffusion's is and its estimate read 254
    min instead of 8: a slow batch-1 time is timed again before it counts."""
    from diffmine_assets.mining.training import estimate

    def timer(times):
        calls = iter(times)
        return lambda k: next(calls)

    bound = estimate.COMPUTE_BOUND_S
    assert estimate._batch_one(timer([bound * 40, 0.01])) == 0.01  # a stall, then the model's own speed
    assert estimate._batch_one(timer([0.02, bound * 40])) == 0.02  # fast at once: not timed again
    # a model that is compute-bound stays so: two slow tries that agree end it, the faster counts
    assert estimate._batch_one(timer([bound * 9, bound * 8])) == bound * 8
    # two that disagree get a third try, and no more
    assert estimate._batch_one(timer([bound * 40, bound * 9, bound * 8])) == bound * 8
    assert estimate.BATCH_ONE_TRIES == 3
