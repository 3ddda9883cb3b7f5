"""The label matrix: every image's typicality under every label, at the
cost of image-level scores (no maps), with the adaptive schedule of the
Diffusion Classifier (Li et al. 2023; METHOD.md section 9)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..config.options import TypicalityOptions
from ..denoisers.base import Denoiser
from ..precision import autocast, resolve_precision
from .estimator import NoiseSet, TypicalityResult


@dataclass
class LabelScores:
    """Image-level typicality of each image under every label (the label
    matrix), with the adaptive schedule of the Diffusion Classifier."""

    labels: list[str]
    scores: torch.Tensor  # (B, L): mean over the samples each entry got
    stderr: torch.Tensor  # (B, L): from the replicates each entry got (G - 1 degrees of freedom)
    samples: torch.Tensor  # (B, L): samples each entry got
    finalist: torch.Tensor  # (B, L): survived the first stage
    predicted: torch.Tensor  # (B,): index of the best finalist
    forward_rows: int
    seconds: float


def _image_losses(model: Denoiser, x0, noise: NoiseSet, img, smp, cond, batch_size: int, dtype) -> torch.Tensor:
    """Image-mean loss of each row (image, sample, condition): one network
    evaluation a row, in full batches."""
    out = torch.empty(len(img), dtype=torch.float64)
    with torch.inference_mode(), autocast(model.module, dtype):
        for s in range(0, len(img), batch_size):
            ii, ss, cc = img[s : s + batch_size], smp[s : s + batch_size], cond[s : s + batch_size]
            eps = noise.eps[ss]
            pred = model.predict(model.add_noise(x0[ii], eps, noise.t[ss]), noise.t[ss], cc).float()
            out[s : s + len(ii)] = ((pred - eps) ** 2).mean(dim=(1, 2, 3)).to(torch.float64)
    return out


def replicate_stderr(diff: torch.Tensor, have: torch.Tensor, group: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, L) standard error of each entry's mean from its replicates: each
    replicate's mean over the samples the entry got (`have`, (B, N, L)), then
    the spread of those means over the replicates that got any. Replicates
    are read from `group`, never from sample order: iid sampling interleaves
    them (sample i is in replicate i mod G), so the first samples of a
    non-finalist touch every replicate, a few samples each."""
    B, N, L = diff.shape
    idx = group.view(1, N, 1).expand(B, N, L)
    sums = torch.zeros((B, groups, L), dtype=torch.float64).scatter_add_(1, idx, torch.where(have, diff, 0).double())
    counts = torch.zeros((B, groups, L), dtype=torch.float64).scatter_add_(1, idx, have.double())
    g_have = counts > 0
    reps = sums / counts.clamp_min(1)
    n_g = g_have.sum(1)
    mean_g = torch.where(g_have, reps, 0).sum(1) / n_g.clamp_min(1)
    var = torch.where(g_have, (reps - mean_g.unsqueeze(1)) ** 2, 0).sum(1) / (n_g - 1).clamp_min(1)
    return torch.where(n_g > 1, (var / n_g).sqrt(), float("nan"))


def label_scores(model: Denoiser, x0: torch.Tensor, own: TypicalityResult, own_key: str, labels: list[str], opts: TypicalityOptions) -> LabelScores:
    """Every image's typicality under every label of `labels`, on the noise
    set of `own` (the maps pass of the images' own label `own_key`), reusing
    its null and own-label losses: only the other labels cost evaluations.

    Image-level scores do not need per-pixel maps, nor every sample for
    labels that are clearly out of the running (Li et al. 2023): every label
    is first scored on the first `matrix_samples` samples (whole replicates:
    the same noise and timesteps for every label of an image); the
    `matrix_finalists` best of them, whichever they are, then get all N
    samples. The prediction is the best finalist. Entries that did not reach
    the final keep their first-stage estimate, and say so (`samples`)."""
    model.check_labels(labels)
    noise = own.noise
    if own.sample_losses is None or noise is None:
        raise ValueError("label_scores needs the result of typicality_maps for the own label")
    t0 = time.monotonic()
    dtype = resolve_precision(opts.precision)
    B, N = own.sample_losses.shape[:2]
    L = len(labels)
    G = int(noise.group.max()) + 1
    per_group = N // G
    first = min(N, -(-opts.matrix_samples // per_group) * per_group)
    o = labels.index(own_key)
    null = own.sample_losses[:, :, 0]
    losses = torch.full((B, N, L), float("nan"), dtype=torch.float64)
    losses[:, :, o] = own.sample_losses[:, :, 1]
    cond_of = model.condition_ids(labels)
    rows = 0

    def run(pairs: list[tuple[int, int]], samples: range) -> None:
        nonlocal rows
        if not pairs or not len(samples):
            return
        img = torch.tensor([b for b, _ in pairs], dtype=torch.long).repeat_interleave(len(samples))
        lab = torch.tensor([l for _, l in pairs], dtype=torch.long).repeat_interleave(len(samples))
        smp = torch.tensor(list(samples), dtype=torch.long).repeat(len(pairs))
        losses[img, smp, lab] = _image_losses(model, x0, noise, img, smp, cond_of[lab], opts.batch_size, dtype)
        rows += len(img)

    model.for_inference()
    run([(b, l) for b in range(B) for l in range(L) if l != o], range(first))
    w = noise.weight.to(torch.float64).view(1, N, 1)
    diff = (null.unsqueeze(-1) - losses) * w  # (B, N, L)
    stage1 = diff[:, :first].mean(1)
    k = min(L, opts.matrix_finalists)
    finalist = torch.zeros((B, L), dtype=torch.bool)
    finalist.scatter_(1, stage1.topk(k, dim=1).indices, True)
    run([(b, l) for b in range(B) for l in range(L) if finalist[b, l] and l != o], range(first, N))
    diff = (null.unsqueeze(-1) - losses) * w
    full = finalist.clone()
    full[:, o] = True  # the own label always has every sample (its map needs them)
    samples = torch.where(full, N, first)
    have = ~torch.isnan(diff)
    scores = torch.where(have, diff, 0).sum(1) / samples
    stderr = replicate_stderr(diff, have, noise.group, G)
    predicted = torch.where(finalist, scores, float("-inf")).argmax(1)
    return LabelScores(list(labels), scores.float(), stderr.float(), samples, finalist, predicted, rows, time.monotonic() - t0)
