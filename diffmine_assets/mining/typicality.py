"""Typicality: how much knowing the label helps the model denoise an image.

``T(x | c) = E_{eps,t}[ L_t(x, eps, null) - L_t(x, eps, c) ]`` (METHOD.md s2),
kept per pixel of model space (channel mean). The engine scores many
(image, noise sample) rows per forward pass, label and null conditions in the
same batch on the same noisy input, with no Python work per sample.

Sampling (see docs/PERFORMANCE.md for the measurements behind the default):
the N samples form G independent replicates; within a replicate, timesteps
are stratified over [t_min, t_max) x T with one random offset, and with
"stratified-antithetic" each noise is paired with its negative. Every image
of every label sees the same noise set (fixed by the seed). The replicates
give an honest standard error for any linear summary of the map (an image
mean, a window mean): std over replicates / sqrt(G).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from .datasets.spec import TypicalityOptions
from .denoisers.base import Denoiser


@dataclass(frozen=True)
class NoiseSet:
    eps: torch.Tensor  # (N, C, h, w)
    t: torch.Tensor  # (N,) long
    group: torch.Tensor  # (N,) replicate of each sample


def noise_set(model: Denoiser, shape: tuple[int, int, int], opts: TypicalityOptions) -> NoiseSet:
    n, groups = opts.n_samples, opts.groups
    per_group = n // groups
    T = model.num_train_timesteps
    lo, hi = opts.t_min * T, opts.t_max * T
    g = torch.Generator().manual_seed(opts.seed)
    if opts.sampling == "iid":
        t = torch.randint(int(lo), int(hi), (n,), generator=g)
        eps = torch.randn((n, *shape), generator=g)
        group = torch.arange(n) % groups
        return NoiseSet(eps, t, group)
    antithetic = opts.sampling == "stratified-antithetic"
    distinct = per_group // 2 if antithetic else per_group
    ts, epss = [], []
    for _ in range(groups):
        offset = torch.rand((), generator=g)
        strata = (torch.arange(distinct, dtype=torch.float64) + float(offset)) / distinct
        t_g = (lo + strata * (hi - lo)).floor().long().clamp(int(lo), int(hi) - 1)
        e_g = torch.randn((distinct, *shape), generator=g)
        if antithetic:
            t_g = torch.cat([t_g, t_g])
            e_g = torch.cat([e_g, -e_g])
        ts.append(t_g)
        epss.append(e_g)
    group = torch.arange(groups).repeat_interleave(per_group)
    return NoiseSet(torch.cat(epss), torch.cat(ts), group)


@dataclass
class TypicalityResult:
    replicate_maps: torch.Tensor  # (B, L, G, h, w): mean difference per replicate
    seconds: float
    forward_rows: int  # network evaluations (one per condition per row)

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
    noise = noise or noise_set(model, tuple(x0.shape[1:]), opts)
    N, G = noise.t.shape[0], int(noise.group.max()) + 1
    conds = model.condition_ids([None, *label_keys])  # null first
    rows_per_pass = max(1, opts.batch_size // (L + 1))
    total = B * N
    img_idx = torch.arange(B).repeat_interleave(N)
    smp_idx = torch.arange(N).repeat(B)
    # (image, replicate) flattened first, so one index_add_ per pass adds
    # every row into its place, with no Python loop over rows.
    sums = torch.zeros((B * G, L, *x0.shape[-2:]), dtype=torch.float64)
    t0 = time.monotonic()
    evaluations = 0
    model.module.eval()
    with torch.inference_mode():
        for start in range(0, total, rows_per_pass):
            ii = img_idx[start : start + rows_per_pass]
            ss = smp_idx[start : start + rows_per_pass]
            m = len(ii)
            eps = noise.eps[ss]
            t = noise.t[ss]
            xt = model.add_noise(x0[ii], eps, t)
            pred = model.predict(xt.repeat(L + 1, 1, 1, 1), t.repeat(L + 1), conds.repeat_interleave(m))
            evaluations += m * (L + 1)
            err = ((pred - eps.repeat(L + 1, 1, 1, 1)) ** 2).mean(dim=1)  # (m*(L+1), h, w)
            err = err.view(L + 1, m, *err.shape[-2:])
            diff = (err[0:1] - err[1:]).transpose(0, 1)  # (m, L, h, w)
            if not torch.isfinite(diff).all():
                bad = int(ii[(~torch.isfinite(diff)).flatten(1).any(1).nonzero()[0, 0]])
                raise FloatingPointError(f"non-finite typicality for image {bad}")
            sums.index_add_(0, ii * G + noise.group[ss], diff.to(torch.float64))
            if progress:
                progress(min(start + m, total), total)
    counts = torch.bincount(noise.group, minlength=G).to(torch.float64).view(1, G, 1, 1, 1)
    means = (sums.view(B, G, L, *x0.shape[-2:]) / counts).transpose(1, 2)
    return TypicalityResult(means.to(torch.float32).contiguous(), time.monotonic() - t0, evaluations)

