"""Typicality: how much knowing the label helps the model denoise an image.

``T(x | c) = E_{eps,t}[ L_t(x, eps, null) - L_t(x, eps, c) ]`` (METHOD.md s2),
kept per pixel of model space (channel mean). The engine scores many
(image, noise sample) rows per forward pass, label and null conditions in the
same batch on the same noisy input, with no Python work per sample.

Sampling (see docs/PERFORMANCE.md for the measurements behind the default):
the N samples form G independent replicates; within a replicate, timesteps
are stratified with one random offset, and with "-antithetic" each noise is
paired with its negative. "importance-antithetic" (the default) stratifies in
the quantiles of a density q(t) proportional to how much the loss difference
varies at t (measured by a small pilot on the first images), and weights each
sample by p(t)/q(t), p uniform on [t_min, t_max) x T: the same expectation as
the definition, with samples spent where the estimate is noisy (low t).
Every image of a partition sees the same noise set (fixed by the seed). The
replicates give an honest standard error for any linear summary of the map
(an image mean, a window mean): std over replicates / sqrt(G).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import polars as pl
import torch

from ..config.options import TypicalityOptions
from ..denoisers.base import Denoiser
from ..precision import autocast, resolve_precision


PILOT_BINS = 12
PILOT_IMAGES = 4
PILOT_NOISE = 2


@dataclass(frozen=True)
class NoiseSet:
    eps: torch.Tensor  # (N, C, h, w)
    t: torch.Tensor  # (N,) long
    group: torch.Tensor  # (N,) replicate of each sample
    weight: torch.Tensor  # (N,) p(t) / q(t): 1 unless timesteps are importance-sampled
    profile: list[float] = field(default_factory=list)  # q per pilot bin, when importance-sampled


def _autocast(model: Denoiser, dtype: torch.dtype):
    return autocast(model.module, dtype)


def timestep_profile(model: Denoiser, x0: torch.Tensor, label_keys: str | list[str], opts: TypicalityOptions, dtype: torch.dtype) -> np.ndarray:
    """Sampling density over PILOT_BINS equal bins of [t_min, t_max) x T,
    proportional to the per-pixel standard deviation of the loss difference
    at the bin's centre, measured by a pilot on the first PILOT_IMAGES images
    of `x0` under their labels (`label_keys`: one per image, or one for all)
    with its own seed, evaluated in full batches like the engine itself.
    Typicality assets pass pilot images drawn from the whole dataset, so
    every label partition of a dataset gets the same noise set."""
    T = model.num_train_timesteps
    edges = np.linspace(opts.t_min * T, opts.t_max * T, PILOT_BINS + 1)
    centres = torch.from_numpy(((edges[:-1] + edges[1:]) / 2).astype(np.int64))
    xs = x0[:PILOT_IMAGES]
    b = xs.shape[0]
    keys = [label_keys] * b if isinstance(label_keys, str) else list(label_keys)[:b]
    g = torch.Generator().manual_seed(opts.seed + 104_729)
    # rows: (bin, noise, image), all at once
    t = centres.repeat_interleave(PILOT_NOISE * b)
    eps = torch.randn((PILOT_BINS * PILOT_NOISE * b, *xs.shape[1:]), generator=g)
    img = torch.arange(b).repeat(PILOT_BINS * PILOT_NOISE)
    cond_label = model.condition_ids(keys)
    cond_null = model.condition_ids([None])
    diffs = torch.empty((len(t), *xs.shape[-2:]))
    step = max(1, opts.batch_size // 2)
    with torch.inference_mode(), _autocast(model, dtype):
        for s in range(0, len(t), step):
            tt, ee, ii = t[s : s + step], eps[s : s + step], img[s : s + step]
            m = len(tt)
            xt = model.add_noise(xs[ii], ee, tt)
            pred = model.predict(torch.cat([xt, xt]), torch.cat([tt, tt]), torch.cat([cond_label[ii], cond_null.expand(m)])).float()
            err = ((pred - torch.cat([ee, ee])) ** 2).mean(1)
            diffs[s : s + m] = err[m:] - err[:m]
    sd = diffs.view(PILOT_BINS, PILOT_NOISE, b, *xs.shape[-2:]).std(dim=1).mean(dim=(1, 2, 3)).numpy().astype(np.float64)
    # a floor keeps every timestep reachable, so the estimate stays unbiased
    sd = np.maximum(sd, 0.05 * sd.max() if sd.max() > 0 else 1.0)
    return sd / sd.sum()


def noise_set(model: Denoiser, shape: tuple[int, int, int], opts: TypicalityOptions, profile: np.ndarray | None = None) -> NoiseSet:
    n, groups = opts.n_samples, opts.groups
    per_group = n // groups
    T = model.num_train_timesteps
    lo, hi = opts.t_min * T, opts.t_max * T
    g = torch.Generator().manual_seed(opts.seed)
    if opts.sampling == "iid":
        t = torch.randint(int(lo), int(hi), (n,), generator=g)
        eps = torch.randn((n, *shape), generator=g)
        group = torch.arange(n) % groups
        return NoiseSet(eps, t, group, torch.ones(n))
    importance = opts.sampling.startswith("importance")
    if importance and profile is None:
        raise ValueError("importance sampling needs a timestep profile (see timestep_profile)")
    q = np.asarray(profile, dtype=np.float64) if importance else np.full(1, 1.0)
    cdf = np.concatenate([[0.0], np.cumsum(q)])
    cdf[-1] = 1.0
    bins = len(q)
    width = (hi - lo) / bins
    antithetic = opts.sampling.endswith("antithetic")
    distinct = per_group // 2 if antithetic else per_group
    ts, epss, ws = [], [], []
    for _ in range(groups):
        offset = float(torch.rand((), generator=g))
        u = (np.arange(distinct) + offset) / distinct
        b = np.clip(np.searchsorted(cdf, u, side="right") - 1, 0, bins - 1)
        t_cont = lo + (b + (u - cdf[b]) / q[b]) * width
        t_g = torch.from_numpy(np.clip(np.floor(t_cont), int(lo), int(np.ceil(hi)) - 1).astype(np.int64))
        w_g = torch.from_numpy((1.0 / bins) / q[b]).float()
        e_g = torch.randn((distinct, *shape), generator=g)
        if antithetic:
            t_g, w_g, e_g = torch.cat([t_g, t_g]), torch.cat([w_g, w_g]), torch.cat([e_g, -e_g])
        ts.append(t_g)
        ws.append(w_g)
        epss.append(e_g)
    group = torch.arange(groups).repeat_interleave(per_group)
    return NoiseSet(torch.cat(epss), torch.cat(ts), group, torch.cat(ws), q.tolist() if importance else [])


def matrix_noise_set(model: Denoiser, shape: tuple[int, int, int], opts: TypicalityOptions) -> NoiseSet | None:
    """The label matrix's own timesteps, where it has its own range:
    stratified over that range (no pilot: they depend on the options and the
    seed only, so every image of every partition gets the same), antithetic
    where the maps' sampling is. The same seed draws the same noise vectors
    as the maps' set; only the timesteps (and weights, all 1) differ. None
    where the matrix scores on the maps' draws."""
    if opts.matrix_range is None:
        return None
    lo, hi = opts.matrix_range
    sampling = "iid" if opts.sampling == "iid" else ("stratified-antithetic" if opts.sampling.endswith("antithetic") else "stratified")
    return noise_set(model, shape, opts.model_copy(update={"t_min": lo, "t_max": hi, "sampling": sampling}))


def pilot_rows(images, n: int = PILOT_IMAGES):
    """The images a dataset's timestep pilot runs on: chosen from the whole
    dataset by image id (a content hash, so stable), one per label first, so
    every label partition of the dataset gets the same noise set and an
    image's labels are always compared on the same draws."""
    ordered = images.sort("image_id")
    firsts = ordered.unique("label_key", keep="first", maintain_order=True).head(n)
    rest = ordered.filter(~pl.col("image_id").is_in(firsts["image_id"].implode())).head(n - len(firsts))
    return pl.concat([firsts, rest])


def dataset_noise(model: Denoiser, pilot_x0: torch.Tensor, pilot_keys: list[str], opts: TypicalityOptions) -> NoiseSet:
    """The noise set every image of a dataset is scored with."""
    profile = None
    if opts.sampling.startswith("importance"):
        profile = timestep_profile(model, pilot_x0, pilot_keys, opts, resolve_precision(opts.precision))
    return noise_set(model, tuple(pilot_x0.shape[1:]), opts, profile)


@dataclass
class TypicalityResult:
    replicate_maps: torch.Tensor  # (B, L, G, h, w): mean difference per replicate
    seconds: float
    forward_rows: int  # network evaluations (one per condition per row)
    precision: str = "float32"
    profile: list[float] = field(default_factory=list)
    # image-mean losses of every (image, sample) under the null condition
    # (index 0) and each label: what the label matrix reuses
    sample_losses: torch.Tensor | None = None  # (B, N, L + 1)
    noise: NoiseSet | None = None

    def take(self, index) -> "TypicalityResult":
        """The result for a subset of the images (same noise set)."""
        index = torch.as_tensor(index, dtype=torch.long)
        losses = self.sample_losses[index] if self.sample_losses is not None else None
        return TypicalityResult(self.replicate_maps[index], self.seconds, self.forward_rows, self.precision, self.profile, losses, self.noise)

    @property
    def maps(self) -> torch.Tensor:  # (B, L, h, w)
        return self.replicate_maps.mean(dim=2)

    @property
    def image_scores(self) -> torch.Tensor:  # (B, L)
        return self.maps.mean(dim=(-2, -1))

    @property
    def image_stderr(self) -> torch.Tensor:  # (B, L)
        rep = self.replicate_maps.mean(dim=(-2, -1))  # (B, L, G)
        return rep.std(dim=2) / rep.shape[2] ** 0.5


def typicality_maps(
    model: Denoiser,
    x0: torch.Tensor,
    label_keys: list[str],
    opts: TypicalityOptions,
    noise: NoiseSet | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TypicalityResult:
    """Typicality maps of images `x0` (model space, (B, C, h, w)) under each
    label of `label_keys` against the null condition, sharing one null
    prediction per (image, sample) across all labels."""
    model.check_labels(label_keys)
    B = x0.shape[0]
    L = len(label_keys)
    dtype = resolve_precision(opts.precision)
    model.for_inference()
    t0 = time.monotonic()
    evaluations = 0
    if noise is None:
        profile = None
        if opts.sampling.startswith("importance"):
            profile = timestep_profile(model, x0, label_keys[0], opts, dtype)
            evaluations += PILOT_BINS * PILOT_NOISE * 2 * min(B, PILOT_IMAGES)
        noise = noise_set(model, tuple(x0.shape[1:]), opts, profile)
    N, G = noise.t.shape[0], int(noise.group.max()) + 1
    conds = model.condition_ids([None, *label_keys])  # null first
    rows_per_pass = max(1, opts.batch_size // (L + 1))
    total = B * N
    img_idx = torch.arange(B).repeat_interleave(N)
    smp_idx = torch.arange(N).repeat(B)
    # (image, replicate) flattened first, so one index_add_ per pass adds
    # every row into its place, with no Python loop over rows.
    sums = torch.zeros((B * G, L, *x0.shape[-2:]), dtype=torch.float64)
    sample_losses = torch.zeros((B * N, L + 1), dtype=torch.float64)
    with torch.inference_mode(), _autocast(model, dtype):
        for start in range(0, total, rows_per_pass):
            ii = img_idx[start : start + rows_per_pass]
            ss = smp_idx[start : start + rows_per_pass]
            m = len(ii)
            eps = noise.eps[ss]
            t = noise.t[ss]
            xt = model.add_noise(x0[ii], eps, t)
            # losses in float32 whatever the network's precision: the
            # difference of two losses is far smaller than either
            pred = model.predict(xt.repeat(L + 1, 1, 1, 1), t.repeat(L + 1), conds.repeat_interleave(m)).float()
            evaluations += m * (L + 1)
            err = ((pred - eps.repeat(L + 1, 1, 1, 1)) ** 2).mean(dim=1)  # (m*(L+1), h, w)
            err = err.view(L + 1, m, *err.shape[-2:])
            diff = (err[0:1] - err[1:]).transpose(0, 1) * noise.weight[ss].view(-1, 1, 1, 1)  # (m, L, h, w)
            if not torch.isfinite(diff).all():
                bad = int(ii[(~torch.isfinite(diff)).flatten(1).any(1).nonzero()[0, 0]])
                raise FloatingPointError(f"non-finite typicality for image {bad}")
            sums.index_add_(0, ii * G + noise.group[ss], diff.to(torch.float64))
            sample_losses[start : start + m] = err.mean(dim=(-2, -1)).transpose(0, 1).to(torch.float64)
            if progress:
                progress(min(start + m, total), total)
    counts = torch.bincount(noise.group, minlength=G).to(torch.float64).view(1, G, 1, 1, 1)
    means = (sums.view(B, G, L, *x0.shape[-2:]) / counts).transpose(1, 2)
    return TypicalityResult(means.to(torch.float32).contiguous(), time.monotonic() - t0, evaluations, str(dtype).replace("torch.", ""), noise.profile, sample_losses.view(B, N, L + 1), noise)
