"""Training the denoiser on a dataset, resumably and reproducibly.

Every random draw of step s (batch, label dropout, timesteps, noise) comes
from a generator seeded by (seed, s), so a run resumed from its last saved
step continues exactly as the uninterrupted run would have. A run whose
length a time ceiling sets is the exception: its length follows the time
its steps take (re-sized at each check), which no two runs share.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file

from ..config.options import TrainingOptions as TrainConfig
from ..denoisers.base import Denoiser
from ..precision import autocast, resolve_precision
from ..tensors import to_model_range
from .augmentation import Augmentation, augment, augmentation_for
from .averaging import Ema, averaged, trained_weights
from .diagnostics import VAL_IMAGES, held_out_accuracy, held_out_loss, label_gain
from .pacing import TIMED_STEPS, checks_within, replanned_total
from .state import BEST_FILE, EMA_FILE, load_optimizer, load_state, save_snapshot, save_state, snapshot_steps, snapshots_dir
from .stopping import FALLBACK_EPOCHS, Check, EvidenceRule

class TrainingDiverged(RuntimeError):
    pass


@dataclass
class TrainResult:
    steps: int
    resumed_from: int
    seconds: float
    log: list[dict]
    diagnostics: list[dict] = field(default_factory=list)  # held-out label gain per band, at some steps
    planned_steps: int = 0
    # the steps asked for before a time budget cut them (planned_steps after; 0: the evidence set the length)
    unbudgeted_steps: int = 0
    # the step of the published weights: the best evidence check's, else the last
    best_step: int = 0
    stopped_by: str = ""
    finished: bool = True  # False: cut short by stop_after, resumable
    augmentation: Augmentation = Augmentation(False, 0.0)  # what the training images were augmented with, and why


def _optimizer(model: Denoiser, cfg: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.module.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)




def planned_steps(cfg: TrainConfig, n_train: int) -> int:
    """Steps of a run: `steps` when given, else `epochs` passes over the
    training images (at least one step); with neither, the evidence sets the
    length and this is the fallback of a run without held-out images."""
    if cfg.steps is not None:
        return cfg.steps
    epochs = cfg.epochs if cfg.epochs is not None else FALLBACK_EPOCHS
    return max(1, math.ceil(epochs * n_train / cfg.batch_size))


# the evidence rule's ceiling before the time budget is applied (never reached)
_UNBOUNDED = 10_000_000


def _timesteps(cfg: TrainConfig, T: int, n: int, g: torch.Generator) -> torch.Tensor:
    t = torch.randint(0, T, (n,), generator=g)
    if cfg.timesteps == "focus":
        lo, hi = int(cfg.focus_range[0] * T), max(int(cfg.focus_range[0] * T) + 1, int(cfg.focus_range[1] * T))
        inside = torch.randint(lo, hi, (n,), generator=g)
        t = torch.where(torch.rand(n, generator=g) < 0.5, inside, t)
    return t


def _loss_weights(cfg: TrainConfig, model: Denoiser, t: torch.Tensor) -> torch.Tensor | None:
    if cfg.loss_weighting == "min-snr":
        ab = model.alphas_cumprod[t]
        snr = ab / (1 - ab)
        return torch.clamp(snr, max=cfg.min_snr_gamma) / snr  # min-SNR-gamma for noise prediction (Hang et al. 2023)
    return None


def train(
    model: Denoiser,
    pixels: torch.Tensor,
    label_keys: list[str],
    names: list[str],
    cfg: TrainConfig,
    state_dir: Path,
    *,
    meta: dict,
    val_pixels: torch.Tensor | None = None,
    val_label_keys: list[str] | None = None,
    progress: Callable[[dict], None] | None = None,
    stop_after: int | None = None,
    in_model_space: bool = False,
    ceiling_s: float | None = None,
) -> TrainResult:
    """Train `model` for `planned_steps(cfg)` steps (fewer if `cfg.time_budget`
    would be exceeded: the number is sized after the first steps are timed and
    recorded, so a resume continues the same run), saving every
    `cfg.save_every` steps to `state_dir` (with `meta`, which must match for a
    resume). With neither steps nor epochs (`cfg.by_evidence`) the length
    follows the held-out evidence (stopping.py) within a ceiling of
    `cfg.time_budget`, else `ceiling_s`, else `cfg.run_target` seconds, for
    the whole fit (set-up and checks included; the steps left are sized again
    at each check, and a resume goes on with what the ceiling had spent), and
    the best check's weights are returned. `names` names each training image
    in errors. `stop_after` ends early (tests of resume; a control stopped
    where its model's best check was). `pixels` are uint8 images, or already
    in model space with `in_model_space`."""
    if len(pixels) == 0:
        raise ValueError("no training image")
    t_begin = time.monotonic()  # a time ceiling is the whole fit's: set-up and checks included
    opt = _optimizer(model, cfg)
    n = len(pixels)
    has_val = val_pixels is not None and len(val_pixels) > 0
    evidence = cfg.by_evidence and has_val  # no held-out image, no evidence: FALLBACK_EPOCHS
    budget_s = cfg.time_budget or ((ceiling_s or cfg.run_target) if evidence else None)
    total = _UNBOUNDED if evidence else planned_steps(cfg, n)
    unbudgeted = 0 if evidence else total
    start = 0
    log: list[dict] = []
    diagnostics: list[dict] = []
    ema = Ema(model.module, cfg.ema_decay) if cfg.ema_decay > 0 else None
    budgeted = False
    n_checks = cfg.checks  # until the first check is timed: then what fits in CHECK_SHARE of the ceiling
    # no stop before the budget has fixed the ceiling (and with it min_steps)
    rule = EvidenceRule(cfg.patience, _UNBOUNDED) if evidence and cfg.stops_early else None
    best: dict[str, torch.Tensor] | None = None
    stopped_by = ""
    # with a time budget the steps, and so `shift: auto`, are known only once the first steps are timed
    aug = augmentation_for(cfg.flip, cfg.shift, None if budget_s else total, cfg.batch_size, n)
    saved = load_state(state_dir)
    # compared as stored: JSON has no tuples, so (32, 64) must meet [32, 64]
    meta = json.loads(json.dumps(meta))
    if saved is not None and saved[1].get("meta") == meta:
        model.module.load_state_dict(saved[0].module.state_dict())
        load_optimizer(opt, saved[2])
        start = saved[1]["step"]
        log = saved[1].get("log", [])
        diagnostics = saved[1].get("diagnostics", [])
        total = saved[1].get("total_steps", total)
        budgeted = saved[1].get("budgeted", False)
        n_checks = saved[1].get("checks", cfg.checks)  # a state saved before the checks were counted ran cfg.checks
        stopped_by = saved[1].get("stopped_by", "")
        if saved[1].get("augmentation") and (budgeted or not budget_s):
            aug = Augmentation(**saved[1]["augmentation"])
        if ema is not None and (state_dir / EMA_FILE).exists():
            ema.load(load_file(state_dir / EMA_FILE))
        if rule is not None and saved[1].get("rule"):
            rule = EvidenceRule.from_state(saved[1]["rule"])
            best = load_file(state_dir / BEST_FILE) if (state_dir / BEST_FILE).exists() else None
    sched = _schedule(opt, cfg, total, start)
    dtype = resolve_precision(cfg.precision)
    cond_all = model.condition_ids(label_keys)
    # in_model_space: the caller encoded the images (a latent backend's VAE, once per image)
    x_all = pixels if in_model_space else model.encode(to_model_range(pixels))
    val_x = None
    if has_val:
        val_x = val_pixels if in_model_space else model.encode(to_model_range(val_pixels))
    val_c = model.condition_ids(val_label_keys) if val_x is not None else None
    log_x, log_c = val_x, val_c
    if val_x is not None and len(val_x) > VAL_IMAGES:
        pick = torch.randperm(len(val_x), generator=torch.Generator().manual_seed(cfg.seed)).narrow(0, 0, VAL_IMAGES).sort().values
        log_x, log_c = val_x[pick], val_c[pick]
    T = model.num_train_timesteps

    def diagnose(done: int, scheduled: bool) -> None:
        nonlocal best
        if val_x is None:
            return
        with averaged(model, ema) as view:
            bands = label_gain(view, val_x, val_c, seed=cfg.seed, dtype=dtype)
            accuracy = held_out_accuracy(view, val_x, val_c, seed=cfg.seed, dtype=dtype)
            entry = {"step": done, "bands": [b.as_dict() for b in bands], "quick_accuracy": accuracy}
            if rule is not None and scheduled:
                # only the rule's own checks count toward its patience (diagnostic_every adds readings, not evidence)
                entry["best"] = rule.observe(Check.of(done, bands, accuracy, T))
                if entry["best"]:
                    best = trained_weights(view.module)
        diagnostics.append(entry)
        model.module.train()

    if start == 0:
        shutil.rmtree(snapshots_dir(state_dir), ignore_errors=True)  # another run's
        if cfg.snapshots:
            save_snapshot(model, state_dir, 0)
    check_s = 0.0
    if evidence and start == 0:
        # the untrained start is the first check: the curve's origin, and its
        # time sizes the checks' share of the ceiling
        t_check = time.monotonic()
        diagnose(0, True)
        check_s = time.monotonic() - t_check
    checks_s_spent, checks_done = check_s, int(check_s > 0)
    # the run was sized here, or its state says how much of the ceiling it had spent: it can be re-sized
    planned_here = False
    model.module.train()
    t0 = time.monotonic()
    window_t, window_images = time.monotonic(), 0
    # The budget is applied once, after the timed steps (within the warm-up,
    # so the learning-rate schedule has not yet used the total).
    # A resumed run that was not yet budgeted still applies it within the warm-up.
    timed = min(TIMED_STEPS, max(1, cfg.warmup_steps - start)) if budget_s else 0
    # Early enough that an evidence run's first check (a twentieth of its steps at 20 checks) is still ahead.
    timed_s = budget_s / max(20, 2 * cfg.checks) if budget_s else 0.0
    t_first = t0
    end = start if stopped_by else total
    every = -(-total // n_checks) if evidence else 0
    resumed = saved[1] if saved is not None and saved[1].get("meta") == meta else {}
    if resumed.get("every") and evidence:
        every = resumed["every"]  # as a re-sized run left it
    last_check = resumed.get("last_check", (start // every) * every if every else start)
    # snapshots taken so far (their steps move with a re-sized total; none is taken twice or skipped)
    snaps = resumed.get("snapshots_taken", sum(1 for s in snapshot_steps(total, cfg.snapshots) if 0 < s <= start))
    if "ceiling_spent_s" in resumed:
        t_begin -= resumed["ceiling_spent_s"]  # the ceiling's clock goes on where the saved run left it
        planned_here = budgeted
    step = start
    while step < min(end, stop_after if stop_after is not None else end):
        if budget_s and not budgeted and step == start + 1:
            t_first = time.monotonic()  # the first step pays one-off costs: timed apart when more are
        if budget_s and not budgeted and (step == start + timed or (step >= start + 2 and time.monotonic() - t_first >= timed_s)):
            now = time.monotonic()
            per_step = (now - t_first) / (step - start - 1) if step - start > 1 else (now - t0) / max(step - start, 1)
            # the checks' time, from the first one (which pays the first call's
            # costs, so it errs toward fewer checks)
            if evidence and check_s:
                n_checks = checks_within(budget_s, check_s, cfg.checks)
            checks_s = n_checks * check_s if evidence else 0.0
            affordable = int((budget_s - checks_s) / max(per_step, 1e-9))
            if affordable < total:
                total = max(step + 1, affordable)
                end = total
                sched = _schedule(opt, cfg, total, step)
            budgeted = planned_here = True
            aug = augmentation_for(cfg.flip, cfg.shift, total, cfg.batch_size, n, ceiling=rule is not None)
            if evidence:
                every = -(-total // n_checks)
            if rule is not None:
                rule.min_steps = math.ceil(cfg.min_share * total)
        g = _step_generator(cfg.seed, step)
        idx = torch.randint(0, n, (cfg.batch_size,), generator=g)
        x0 = x_all[idx]
        cond = cond_all[idx].clone()
        cond[torch.rand(cfg.batch_size, generator=g) < cfg.label_dropout] = 0
        t = _timesteps(cfg, T, cfg.batch_size, g)
        eps = torch.randn(x0.shape, generator=g)
        x0 = augment(x0, aug, g)
        with autocast(model.module, dtype):
            pred = model.predict(model.add_noise(x0, eps, t), t, cond)
        per_sample = ((pred.float() - eps) ** 2).mean(dim=(1, 2, 3))
        weights = _loss_weights(cfg, model, t)
        loss = (per_sample * weights).mean() if weights is not None else per_sample.mean()
        if not torch.isfinite(loss):
            bad = int(idx[(~torch.isfinite(per_sample)).nonzero()[0, 0]])
            raise TrainingDiverged(f"non-finite loss at step {step + 1} on image {names[bad]}; lower learning_rate or check that image")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.module.parameters(), cfg.grad_clip)
        opt.step()
        # the gradients are not needed until the next backward: freed now, checks and saves run without them (3.4 GB for a whole SD UNet)
        opt.zero_grad(set_to_none=True)
        sched.step()
        if ema is not None:
            ema.update(model.module, step)
        window_images += cfg.batch_size
        step += 1
        done = step
        if done % cfg.log_every == 0 or done == end:
            now = time.monotonic()
            rate = window_images / max(now - window_t, 1e-9)
            # before the ceiling has sized the run, the ETA is what is left of the ceiling
            sized = end < _UNBOUNDED or not budget_s
            left_s = max(0.0, budget_s - (now - t_begin)) if not sized else 0.0
            val_loss = float("nan")
            if val_x is not None:
                with averaged(model, ema) as view:
                    val_loss = held_out_loss(view, log_x, log_c, cfg.seed, dtype)
            row = {
                "step": done,
                "loss": per_sample.mean().item(),
                "val_loss": val_loss,
                "images_per_s": rate,
                "elapsed_s": now - t0,
                "eta_s": (end - done) * cfg.batch_size / max(rate, 1e-9) if sized else left_s,
                "lr": sched.get_last_lr()[0],
            }
            model.module.train()
            log.append(row)
            window_t, window_images = now, 0
            if progress:
                progress({**row, "total_steps": end if sized else done + int(left_s * rate / cfg.batch_size)})
        # a check due within half an interval of the end waits for the end's own
        scheduled = done == end or bool(every and done - last_check >= every and 2 * (end - done) >= every)
        if scheduled:
            last_check = done
        if scheduled or (cfg.diagnostic_every and done % cfg.diagnostic_every == 0):
            t_check = time.monotonic()
            diagnose(done, scheduled)
            if scheduled:  # extra diagnostic readings count as the steps' time: no check budgets for them
                checks_s_spent, checks_done = checks_s_spent + time.monotonic() - t_check, checks_done + 1
            if progress and diagnostics and diagnostics[-1]["step"] == done:
                progress({"step": done, "total_steps": end, "label_gain": diagnostics[-1]["bands"], "quick_accuracy": diagnostics[-1]["quick_accuracy"],
                          **({"best_step": rule.best.step} if rule is not None and rule.best else {})})
            reason = rule.stop_reason(done) if rule is not None and scheduled and done < end else None
            if reason:
                stopped_by, end = reason, done
            elif planned_here and scheduled and done < end:
                # The steps were sized from the first few; the machine's speed
                # drifts (the 600-image photo-shapes run's steps slowed 5 %
                # and its fit took 736 s of a 702-s ceiling), so each check
                # sizes what is left of the ceiling again.
                now = time.monotonic()
                steps_s = now - t0 - (checks_s_spent - check_s)
                checks_left = -(-(end - done) // every)
                new = replanned_total(budget_s, now - t_begin, steps_s, done - start, done, checks_s_spent / max(checks_done, 1), checks_left)
                if abs(new - total) > 0.01 * total:
                    total = end = new
                    # never more checks to come than planned, so their share of the ceiling holds
                    every = max(every, -(-(total - done) // checks_left))
                    sched = _schedule(opt, cfg, total, done)
                    if rule is not None:
                        rule.min_steps = math.ceil(cfg.min_share * total)
                    diagnostics[-1]["planned_steps"] = total
        if cfg.snapshots and snaps < cfg.snapshots and done >= round(total * (snaps + 1) / cfg.snapshots):
            with averaged(model, ema) as view:
                save_snapshot(view, state_dir, done)
            # one a step: several a shrunk total made due at once are taken on the steps that follow, so the curve keeps its points
            snaps += 1
        if done % cfg.save_every == 0 or done == end or done == stop_after:
            extra = {EMA_FILE: ema.shadow} if ema is not None else {}
            if best is not None:
                extra[BEST_FILE] = best
            state = {"step": done, "total_steps": total, "budgeted": budgeted, "meta": meta, "config": cfg.model_dump(mode="json"), "log": log,
                     "diagnostics": diagnostics, "stopped_by": stopped_by, "checks": n_checks, "every": every, "last_check": last_check,
                     "snapshots_taken": snaps, "ceiling_spent_s": time.monotonic() - t_begin, "rule": rule.state() if rule is not None else None,
                     "augmentation": aug.as_dict()}
            save_state(model, opt, state_dir, state, extra)
    finished = step >= end
    if finished and budget_s and not budgeted and cfg.shift == "auto":
        aug = Augmentation(aug.flip, 0.0, "shift auto: the run ended before its time budget fixed the steps")
    if finished and not stopped_by:
        stopped_by = (f"the time ceiling ({budget_s:.0f} s, {total} steps)" if evidence else
                      f"its length: {total} steps" + (f" (a time budget of {cfg.time_budget:.0f} s cut {unbudgeted})" if total < unbudgeted else ""))
        if cfg.by_evidence and not has_val:
            stopped_by += f"; no held-out image to read evidence from: {FALLBACK_EPOCHS:g} epochs"
    if ema is not None:
        ema.copy_to(model.module)
    best_step = step
    if rule is not None and best is not None and finished:
        sd = model.module.state_dict()
        model.module.load_state_dict({**sd, **{k: v.to(sd[k].dtype) for k, v in best.items()}})
        best_step = rule.best.step
    model.module.eval()
    return TrainResult(steps=step, resumed_from=start, seconds=time.monotonic() - t_begin, log=log, diagnostics=diagnostics, planned_steps=total,
                       unbudgeted_steps=unbudgeted, best_step=best_step, stopped_by=stopped_by, finished=finished, augmentation=aug)


def _schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, total: int, done: int):
    for group in opt.param_groups:
        group["lr"] = group["initial_lr"] = cfg.learning_rate * group.get("lr_mult", 1.0)
    name = "cosine" if cfg.lr_schedule == "cosine" else "constant_with_warmup"
    from diffusers.optimization import get_scheduler  # lazily: see denoisers/tiny.py

    return get_scheduler(name, opt, num_warmup_steps=cfg.warmup_steps, num_training_steps=total, last_epoch=done - 1)
