"""How long a dataset's run will take on this machine, before it starts, and
how many training steps fit a time budget.

The estimate times a few real training steps and forward passes of the
dataset's own model (a few seconds), then counts the work: training steps,
and the network evaluations of typicality (own label and null at N samples,
plus the adaptive label matrix), features and clusters.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from ..config.options import TrainingOptions, TranslationOptions, TypicalityOptions
from ..denoisers.registry import new_denoiser
from ..precision import autocast, resolve_precision
from .loop import planned_steps
from .stopping import reads_evidence

# Seconds a Dagster run costs beyond its work (process start, events, IO).
RUN_OVERHEAD_S = 4.0
# Seconds the report run takes beyond its network work: the evaluation's
# figures and pictures, the charts, the page. Measured: 33 s of the 50 of a
# 10-label, 600-image photo-shapes run (the evaluation 37 s, 17 of them
# scoring); 43 s in all for the demo's 4 labels, whose first run also builds
# matplotlib's font cache.
REPORT_S = 30.0


@dataclass
class RunEstimate:
    images: int
    labels: int
    training_steps: int
    training_s: float
    typicality_evaluations: int
    typicality_s: float
    other_s: float
    seconds_per_step: float
    evaluations_per_s: float
    translation_evaluations: int = 0
    translation_s: float = 0.0
    by_evidence: bool = False  # training_s is the ceiling: the held-out evidence may stop it sooner

    @property
    def total_s(self) -> float:
        return self.training_s + self.typicality_s + self.translation_s + self.other_s

    def as_dict(self) -> dict:
        return {**asdict(self), "total_s": round(self.total_s, 1)}

    def describe(self) -> str:
        m = lambda s: f"{s / 60:.1f} min"  # noqa: E731
        training = (f"training {m(self.training_s)} (what the run target leaves it: {self.training_steps} steps)"
                    if self.by_evidence else f"training {m(self.training_s)} ({self.training_steps} steps)")
        return (f"estimate: {m(self.total_s)} in all: {training}, "
                f"typicality {m(self.typicality_s)} ({self.typicality_evaluations:,} network evaluations), "
                + (f"translation {m(self.translation_s)} ({self.translation_evaluations:,}), " if self.translation_evaluations else "")
                + f"the rest {m(self.other_s)} (features, runs, the evaluation and the report)")


# A batch-1 step or forward pass slower than this is compute-bound (a CPU, or
# Stable Diffusion at 512 px on one: a forward 4.0 s at batch 1, 7.3 s at 2;
# a whole-UNet step 18 s, 33 s): the estimate times batches 1 and 2 and
# extends the line to the batch instead of timing whole batches, which at
# the paper's batch of 32 would take minutes before the run even starts.
COMPUTE_BOUND_S = 0.5


def _extended(one: float, two: float, batch: int) -> float:
    """Seconds at `batch` on the line through batches 1 and 2 (the fixed
    part, an optimizer's update, is not multiplied by the batch)."""
    return max(one, one + (two - one) * (batch - 1))


# A batch-1 time over COMPUTE_BOUND_S is timed again, up to this many times in
# all, before the model is taken for compute-bound: one stalled step (another
# process on the cores, a page fault) had made the tiny model's estimate read
# 254 min instead of 8, and the estimate sizes what training gets of the run.
BATCH_ONE_TRIES = 3


def _batch_one(timed: Callable[[int], float]) -> float:
    """The fastest of up to BATCH_ONE_TRIES batch-1 timings, stopping at the
    first under COMPUTE_BOUND_S, or at a second slow one within a fifth of
    the first (a compute-bound model: Stable Diffusion on a CPU pays 18 s a
    try)."""
    best = timed(1)
    for _ in range(BATCH_ONE_TRIES - 1):
        if best <= COMPUTE_BOUND_S:
            break
        again = timed(1)
        steady = again >= 0.8 * best
        best = min(best, again)
        if steady:
            break
    return best


def calibrate(labels: list[str], resolution: int, training: TrainingOptions, typicality: TypicalityOptions, steps: int = 3) -> tuple[float, float]:
    """(seconds per training step, network evaluations per second) of the
    dataset's model on this machine, timed on random inputs."""
    model = new_denoiser(training, labels, resolution, seed=0)
    opt = torch.optim.AdamW([p for p in model.module.parameters() if p.requires_grad], lr=1e-6)
    b = training.batch_size
    # in the space the network denoises (a latent backend's VAE output)
    shape = model.encode(torch.rand(1, 3, resolution, resolution) * 2 - 1).shape[1:]
    x = torch.randn(b, *shape)
    t = torch.randint(0, model.num_train_timesteps, (b,))
    c = torch.randint(0, len(labels) + 1, (b,))
    dtype = resolve_precision(training.precision)

    def step(k: int) -> float:
        t0 = time.perf_counter()
        with autocast(model.module, dtype):
            out = model.predict(x[:k], t[:k], c[:k])
        loss = ((out.float() - x[:k]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    step(1)  # the first call pays one-off costs
    single = _batch_one(step)
    if single > COMPUTE_BOUND_S:
        per_step = _extended(single, step(min(2, b)), b)
    else:
        step(b)
        # the median, so one stalled step does not size the run
        per_step = statistics.median(step(b) for _ in range(steps))
    model.for_inference()
    n = typicality.batch_size
    xb, tb, cb = x[:1].expand(n, -1, -1, -1).contiguous(), t[:1].expand(n), c[:1].expand(n)

    def forward(k: int) -> float:
        t0 = time.perf_counter()
        model.predict(xb[:k], tb[:k], cb[:k])
        return time.perf_counter() - t0

    with torch.inference_mode(), autocast(model.module, resolve_precision(typicality.precision)):
        forward(1)
        single = _batch_one(forward)
        if single > COMPUTE_BOUND_S:
            rate = n / _extended(single, forward(min(2, n)), n)
        else:
            forward(n)
            rate = n / statistics.median(forward(n) for _ in range(steps * 2))
    return per_step, rate


def typicality_evaluations(images: int, held_out: int, labels: int, opts: TypicalityOptions) -> int:
    """Network evaluations of one dataset's typicality: the own label and the
    null at N samples for every image; the label matrix's other labels at
    `matrix_samples`, and about `matrix_finalists - 1` of them (the own label
    is usually a finalist) at the remaining samples, for the images it
    covers (and their own label and the null again at N samples where the
    matrix has its own timestep range)."""
    n = opts.n_samples
    evaluations = images * n * 2
    covered = {"all": images, "held-out": held_out, "none": 0}[opts.label_matrix]
    if labels > 1 and covered:
        first = min(n, opts.matrix_samples)
        evaluations += covered * n * 2 if opts.matrix_range is not None else 0
        evaluations += covered * ((labels - 1) * first + max(0, min(labels, opts.matrix_finalists) - 1) * (n - first))
    return evaluations


def translation_evaluations(labels: int, images: int, opts: TranslationOptions, typicality: TypicalityOptions) -> int:
    """Network evaluations of the translations: per label, its most typical
    images inverted once, regenerated into every other label (3 rows a step
    with injection, 2 without), and each output scored under target and
    source against the null at N samples; a masked method adds the mask's
    draws under the source and under every target."""
    if labels < 2:
        return 0
    per_label = min(opts.images_for(labels), max(1, images // labels))
    k = max(1, round(opts.strength * opts.steps))
    rows = 3 if opts.method in ("pnp", "masked-pnp") else 2
    mask = opts.mask_draws * labels if opts.method.startswith("masked") else 0
    return labels * per_label * (k + mask + (labels - 1) * (k * rows + typicality.n_samples * 3))


def evaluation_evaluations(labels: int, images: int, opts: TranslationOptions, typicality: TypicalityOptions) -> int:
    """Network evaluations of the report run's evaluation: every translated
    source scored untranslated under the same (target, source) pair, the
    chance level of the translations' figures (target, source, null at N)."""
    if labels < 2:
        return 0
    per_label = min(opts.images_for(labels), max(1, images // labels))
    return labels * per_label * (labels - 1) * typicality.n_samples * 3


def estimate_run(labels: list[str], images: int, held_out: int, train_images: int, resolution: int, training: TrainingOptions,
                 typicality: TypicalityOptions, calibration: tuple[float, float] | None = None, translation: TranslationOptions | None = None) -> RunEstimate:
    per_step, rate = calibration or calibrate(labels, resolution, training, typicality)
    steps = planned_steps(training, train_images)
    train_s = steps * per_step
    if training.time_budget:
        train_s = min(train_s, training.time_budget)
        steps = min(steps, max(1, int(training.time_budget / per_step)))
    evaluations = typicality_evaluations(images, held_out, len(labels), typicality)
    trans = translation_evaluations(len(labels), images, translation, typicality) if translation else 0
    # features: one pass per image with a kept patch; runs: one per label and
    # three per dataset; the report run: its evaluation's scoring and the rest
    scoring = evaluation_evaluations(len(labels), images, translation, typicality) if translation else 0
    other = (images + scoring) / rate + RUN_OVERHEAD_S * (len(labels) + 3) + REPORT_S
    # translation runs in float32 (exact inversion): bfloat16 is about 1.4x
    # the rate where typicality uses it (docs/PERFORMANCE.md)
    slower = 1.4 if translation and translation.precision == "float32" and resolve_precision(typicality.precision) != torch.float32 else 1.0
    est = RunEstimate(images, len(labels), steps, train_s, evaluations, evaluations / rate, other, per_step, rate, trans, trans / rate * slower)
    if reads_evidence(training.by_evidence, training.stops_early, train_images, held_out):
        # the evidence sets the length: the estimate is its ceiling
        est.training_s = training.time_budget or evidence_ceiling(training, est)
        est.training_steps = max(1, int(est.training_s / per_step))
        est.by_evidence = True
    return est


def evidence_ceiling(training: TrainingOptions, estimate: RunEstimate) -> float:
    """Seconds an evidence-length training may take at most when no time
    budget is given: what `run_target` leaves after the estimate of the
    other stages, and never under a tenth of it (a run that cannot fit its
    target still trains; the estimate says it will overrun)."""
    try:
        return training_budget(training.run_target, estimate)
    except BudgetTooShort:
        return max(1.0, float(math.floor(training.run_target / 10)))


# The share of a run's time (its target or --budget) kept back from training
# for what the estimate does not see: the process's start, the estimate's
# own timed passes, and the other stages' few seconds of error. The 600-image
# photo-shapes run of 2026-12-05 took 910 s of its 900: the other stages
# 6 s over their estimate, the command's start 4 s (docs/QUALITY.md).
TARGET_MARGIN = 0.03


def training_budget(total_budget_s: float, estimate: RunEstimate, share: float = 1.0, spent_s: float = 0.0) -> float:
    """The seconds training may take so the whole run fits `total_budget_s`:
    what is left of it, less TARGET_MARGIN, after `spent_s` (already used:
    reading the files, the estimate) and the estimated typicality,
    translation and the rest of the `share` of the labels the run will mine
    (0 when it mines none). Raises BudgetTooShort when that is under a tenth
    of the budget: the run would overrun it whatever training got."""
    rest = share * (estimate.typicality_s + estimate.translation_s + estimate.other_s)
    left = total_budget_s * (1 - TARGET_MARGIN) - spent_s - rest
    if left < total_budget_s / 10:
        need = math.ceil((rest + spent_s) / (0.9 - TARGET_MARGIN)) + 1
        raise BudgetTooShort(
            f"a budget of {total_budget_s:.0f} s is too short for this run: besides training, it is estimated at {rest + spent_s:.0f} s "
            f"(typicality {share * estimate.typicality_s:.0f} s, translation {share * estimate.translation_s:.0f} s, "
            f"the rest {share * estimate.other_s:.0f} s, already spent {spent_s:.0f} s); "
            f"give at least {need} s, select fewer assets or labels, or run without --budget")
    return float(math.floor(left))


class BudgetTooShort(ValueError):
    """Even with no training the run would not fit the time it was given."""
