"""Did the model learn the labels? The held-out label gain, per timestep band.

Typicality is the expected drop in denoising loss that knowing the label
brings. On held-out images that drop must be positive somewhere, or no
estimator can find anything: the model learnt what all images share, not
what tells one label from another. This measures it directly:
``gain(band) = mean over held-out images and draws of L(null) - L(own label)``
with t drawn within the band, the same noise for both conditions. Bands where
the gain is not positive are bands where typicality draws add only noise.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from ..denoisers.base import Denoiser
from ..precision import autocast


@contextmanager
def _as_scored(model: Denoiser):
    """The network as the published model is scored (eval mode: no
    dropout), back in the mode it was in afterwards."""
    was_training = model.module.training
    model.module.eval()
    try:
        yield
    finally:
        model.module.train(was_training)

DIAGNOSTIC_BANDS = 10
DIAGNOSTIC_IMAGES = 128


@dataclass(frozen=True)
class BandGain:
    t_lo: int
    t_hi: int
    gain: float  # mean L(null) - L(own), per pixel
    stderr: float
    null_loss: float

    @property
    def relative(self) -> float:
        return self.gain / self.null_loss if self.null_loss > 0 else float("nan")

    @classmethod
    def from_dict(cls, d: dict) -> "BandGain":
        """A band as stored by `as_dict` (training state, checkpoint JSON)."""
        return cls(d["t_lo"], d["t_hi"], d["gain"], d["stderr"], d["null_loss"])

    def as_dict(self) -> dict:
        return {"t_lo": self.t_lo, "t_hi": self.t_hi, "gain": self.gain, "stderr": self.stderr, "null_loss": self.null_loss, "relative": self.relative}


def label_gain(
    model: Denoiser,
    x0: torch.Tensor,
    cond: torch.Tensor,
    *,
    bands: int = DIAGNOSTIC_BANDS,
    draws: int = 2,
    seed: int = 0,
    batch_size: int = 64,
    dtype: torch.dtype = torch.float32,
    max_images: int = DIAGNOSTIC_IMAGES,
) -> list[BandGain]:
    """Per band of [0, T): the held-out label gain of `model` on images `x0`
    (model space) with their own conditions `cond`. Every call with the same
    seed uses the same images, timesteps and noise, so successive checkpoints
    are compared on equal draws."""
    if len(x0) == 0:
        return []
    if len(x0) > max_images:
        pick = torch.randperm(len(x0), generator=torch.Generator().manual_seed(seed))[:max_images].sort().values
        x0, cond = x0[pick], cond[pick]
    T = model.num_train_timesteps
    edges = np.linspace(0, T, bands + 1).round().astype(int)
    g = torch.Generator().manual_seed(seed + 15_485_863)
    n = len(x0)
    rows_img = torch.arange(n).repeat(bands * draws)
    rows_band = torch.arange(bands).repeat_interleave(n * draws)
    lo = torch.from_numpy(edges[:-1])[rows_band]
    hi = torch.from_numpy(edges[1:])[rows_band]
    t = lo + (torch.rand(len(rows_img), generator=g) * (hi - lo).float()).long().clamp_max(hi - lo - 1)
    eps = torch.randn((len(rows_img), *x0.shape[1:]), generator=g)
    # draws come in antithetic pairs (eps, -eps at the same t): a cheaper,
    # steadier estimate of the same mean
    pairs = torch.arange(len(rows_img)).view(bands, draws, n)
    if draws >= 2:
        first, second = pairs[:, 0 : draws - draws % 2 : 2].reshape(-1), pairs[:, 1 : draws - draws % 2 + 1 : 2].reshape(-1)
        eps[second] = -eps[first]
        t[second] = t[first]
    null = model.condition_ids([None])
    gains = torch.empty(len(rows_img), dtype=torch.float64)
    nulls = torch.empty(len(rows_img), dtype=torch.float64)
    step = max(1, batch_size // 2)
    with _as_scored(model), torch.inference_mode(), autocast(model.module, dtype):
        for s in range(0, len(rows_img), step):
            ii, tt, ee = rows_img[s : s + step], t[s : s + step], eps[s : s + step]
            m = len(ii)
            xt = model.add_noise(x0[ii], ee, tt)
            pred = model.predict(torch.cat([xt, xt]), torch.cat([tt, tt]), torch.cat([cond[ii], null.expand(m)])).float()
            err = ((pred - torch.cat([ee, ee])) ** 2).mean(dim=(1, 2, 3)).double()
            gains[s : s + m] = err[m:] - err[:m]
            nulls[s : s + m] = err[m:]
    out = []
    for b in range(bands):
        sel = rows_band == b
        # per image first (draws of one image are not independent samples of the population)
        per_image = gains[sel].view(draws, n).mean(0)
        out.append(BandGain(int(edges[b]), int(edges[b + 1]), float(per_image.mean()), float(per_image.std() / n**0.5) if n > 1 else float("nan"), float(nulls[sel].mean())))
    return out


def gain_over(bands: list[BandGain], t_lo: float, t_hi: float) -> float:
    """Mean gain over the bands inside [t_lo, t_hi) (timestep indices): the
    part of the diagnostic that the typicality range sees."""
    inside = [b.gain for b in bands if b.t_lo >= t_lo and b.t_hi <= t_hi]
    return float(np.mean(inside)) if inside else float("nan")


def describe_gain(bands: list[dict]) -> str:
    """One line: each band's gain, x 1e3, and the share of the null loss."""
    if not bands:
        return "(no held-out images)"
    return "  ".join(f"t{b['t_lo']}-{b['t_hi']}: {b['gain'] * 1e3:+.3f} ({b['relative'] * 100:+.2f}%)" for b in bands)


def held_out_accuracy(
    model: Denoiser,
    x0: torch.Tensor,
    cond: torch.Tensor,
    *,
    t_range: tuple[float, float] = (0.1, 0.5),
    draws: int = 4,
    seed: int = 0,
    batch_size: int = 64,
    dtype: torch.dtype = torch.float32,
    max_images: int = 64,
) -> float:
    """A quick read of the diffusion classifier during training: the share
    of held-out images whose denoising loss is lowest under their own label
    (every label on the same noise, t stratified in `t_range`). Noisier than
    the label matrix (`draws` samples, at most `max_images` images), but it
    tells early whether the labels are being learnt at all."""
    labels = len(getattr(model, "labels", [])) or int(cond.max())
    if len(x0) == 0 or labels < 2:
        return float("nan")
    if len(x0) > max_images:
        pick = torch.randperm(len(x0), generator=torch.Generator().manual_seed(seed))[:max_images].sort().values
        x0, cond = x0[pick], cond[pick]
    T = model.num_train_timesteps
    g = torch.Generator().manual_seed(seed + 32_452_843)
    n = len(x0)
    lo, hi = t_range[0] * T, t_range[1] * T
    t_draw = (lo + (torch.arange(draws) + torch.rand(draws, generator=g)) / draws * (hi - lo)).long()
    eps_draw = torch.randn((draws, *x0.shape[1:]), generator=g)
    conds = torch.arange(1, labels + 1)
    rows = [(i, d, c) for i in range(n) for d in range(draws) for c in range(labels)]
    img = torch.tensor([r[0] for r in rows])
    drw = torch.tensor([r[1] for r in rows])
    lab = torch.tensor([r[2] for r in rows])
    losses = torch.empty(len(rows), dtype=torch.float64)
    with _as_scored(model), torch.inference_mode(), autocast(model.module, dtype):
        for s in range(0, len(rows), batch_size):
            ii, dd, cc = img[s : s + batch_size], drw[s : s + batch_size], lab[s : s + batch_size]
            eps, t = eps_draw[dd], t_draw[dd]
            pred = model.predict(model.add_noise(x0[ii], eps, t), t, conds[cc]).float()
            losses[s : s + len(ii)] = ((pred - eps) ** 2).mean(dim=(1, 2, 3)).double()
    predicted = losses.view(n, draws, labels).mean(1).argmin(1) + 1
    return float((predicted == cond).float().mean())


VAL_BATCH = 16  # held-out images per forward pass of the held-out loss: 100 at once at 512 px would need tens of GB
# The held-out loss is logged every log_every steps: at 185 images in float32
# it took 7 % of a photo-shapes run's steps; 64 images under the training's
# precision read the same trend for a sixth of that.
VAL_IMAGES = 64


def held_out_loss(model: Denoiser, x0: torch.Tensor, cond: torch.Tensor, seed: int, dtype: torch.dtype = torch.float32) -> float:
    """Mean denoising loss of `x0` under its labels `cond`, on draws fixed by
    `seed`: the held-out loss logged along training."""
    if len(x0) == 0:
        return float("nan")
    g = torch.Generator().manual_seed(seed + 7)
    t = torch.randint(0, model.num_train_timesteps, (len(x0),), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    total = 0.0
    with _as_scored(model), torch.inference_mode(), autocast(model.module, dtype):
        for s in range(0, len(x0), VAL_BATCH):
            sl = slice(s, s + VAL_BATCH)
            pred = model.predict(model.add_noise(x0[sl], eps[sl], t[sl]), t[sl], cond[sl]).float()
            total += float(((pred - eps[sl]) ** 2).sum())
    return total / eps.numel()
