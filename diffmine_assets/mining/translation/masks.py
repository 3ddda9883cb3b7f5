"""Where a translation may change the image: the edit mask of DiffEdit
(Couairon et al., ICLR 2023), computed the way diffusers'
`StableDiffusionDiffEditPipeline.generate_mask` does.

The image is noised to `mask_strength` of the schedule with `mask_draws`
draws, and the model predicts the noise under the source label and under the
target label on the same noisy inputs. With `mask_signal: source` (the
default) the map is, per cell, how much lower the source label's
noise-prediction error is than the target's on the same draws, averaged over
draws and channels and kept where positive: diffmine's typicality of the
source against the target, measured per cell. With `difference` it is
DiffEdit's: the absolute difference of the two predictions. Either is
smoothed, thresholded against its own mean (DiffEdit clamps at 3x the mean
and keeps what is above half of that: `mask_threshold` 1.5), completed by
the cells above `mask_grow` x the mean connected to those (hysteresis: an
element whose core passes is taken whole), and grown by `mask_dilate` cells.

The absolute difference also marks where the target's element
could be drawn (on the built-in data, the grey square every label has), and
there the regeneration drew it while the source's element was erased; the
signed map marks only where the source's label lives, so the target's
element is drawn in its place (docs/TRANSLATION.md, issue 29's second round).
The dilation gives a target element larger than the source's room.

Differences from the pipeline, and why: the predictions are the conditional
ones, not guided ones (for `difference`, guidance scales the map by one
factor, which the threshold against the mean cancels; the squared errors of
`source` are the model's own, as typicality measures them); the smoothing is a Gaussian on the map,
which the pipeline leaves as a TODO, because on a small model the raw map is
speckled; and the source's draws are shared by all its targets, so an image
with k targets costs draws x (k + 1) evaluations, not draws x 2k.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config.options import TranslationOptions
from ..denoisers.base import Denoiser
from ..precision import autocast, resolve_precision


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, h, w) maps blurred with a separable Gaussian of `sigma` cells,
    edges replicated (a mask at the border is not pulled toward zero)."""
    if sigma <= 0:
        return maps
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    out = F.pad(maps[:, None], (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, k.view(1, 1, 1, -1))
    out = F.conv2d(out, k.view(1, 1, -1, 1))
    return out[:, 0]


def difference_maps(model: Denoiser, x0: torch.Tensor, source_keys: list[str], targets: list[list[str]], opts: TranslationOptions) -> list[torch.Tensor]:
    """For each image i, a (len(targets[i]), h, w) map: the mean absolute
    difference of the noise predicted under each target and under the
    source, over the same `mask_draws` noisy versions of the image; with
    `mask_signal: source`, the mean over draws of the target's squared error
    minus the source's, where positive."""
    T = model.num_train_timesteps
    t = min(T - 1, max(1, round(opts.mask_strength * T)))
    g = torch.Generator().manual_seed(opts.seed)
    eps = torch.randn((opts.mask_draws, *x0.shape[1:]), generator=g)
    # one row per (image, label among source and targets, draw); every image sees the same draws
    rows = [(i, key, d) for i, src in enumerate(source_keys) if targets[i] for key in [src, *targets[i]] for d in range(opts.mask_draws)]
    dtype = resolve_precision(opts.precision)
    preds: dict[tuple[int, str], torch.Tensor] = {}
    with torch.inference_mode(), autocast(model.module, dtype):
        for s in range(0, len(rows), opts.batch_size):
            chunk = rows[s : s + opts.batch_size]
            img = torch.tensor([i for i, _, _ in chunk])
            draw = torch.tensor([d for _, _, d in chunk])
            tt = torch.full((len(chunk),), t, dtype=torch.long)
            xt = model.add_noise(x0[img].float(), eps[draw], tt)
            out = model.predict(xt, tt, model.condition_ids([k for _, k, _ in chunk])).float()
            for (i, key, _), p in zip(chunk, out):
                preds.setdefault((i, key), []).append(p)
    result = []
    for i, src in enumerate(source_keys):
        if not targets[i]:
            result.append(x0.new_zeros((0, *x0.shape[-2:])))
            continue
        base = torch.stack(preds[(i, src)])
        if opts.mask_signal == "source":
            err = ((base - eps) ** 2).mean(dim=1)  # preds are in draw order: row d was noised with eps[d]
            diffs = [(((torch.stack(preds[(i, k)]) - eps) ** 2).mean(dim=1) - err).mean(dim=0).clamp_min(0) for k in targets[i]]
        else:
            diffs = [(torch.stack(preds[(i, k)]) - base).abs().mean(dim=(0, 1)) for k in targets[i]]
        result.append(torch.stack(diffs) if diffs else x0.new_zeros((0, *x0.shape[-2:])))
    return result


def masks_from(diff: torch.Tensor, opts: TranslationOptions) -> torch.Tensor:
    """(N, h, w) difference maps to (N, h, w) masks of 0 and 1: smoothed,
    then 1 where above `mask_threshold` x the map's own mean (with
    `mask_grow`, also where above that lower multiple and connected to such a
    cell), then grown by
    `mask_dilate` cells (a square of side 2 x dilate + 1). A map with no
    difference at all (two labels the model does not tell apart) edits
    nothing."""
    smooth = gaussian_blur(diff.float(), opts.mask_smooth)
    mean = smooth.mean(dim=(-2, -1), keepdim=True)
    if opts.mask_grow is None or opts.mask_grow >= opts.mask_threshold:
        mask = ((smooth > opts.mask_threshold * mean) & (mean > 0)).float()
    else:
        from skimage.filters import apply_hysteresis_threshold  # imported where used: scikit-image is slow to import

        # per map: the cores above the threshold (the plain mask), grown through connected cells above the lower level
        cpu = smooth.detach().cpu()
        mask = torch.stack([torch.from_numpy(apply_hysteresis_threshold(m.numpy(), opts.mask_grow * float(mu), opts.mask_threshold * float(mu)))
                            if mu > 0 else torch.zeros(m.shape, dtype=torch.bool) for m, mu in zip(cpu, mean.flatten().cpu())]).float().to(smooth.device)
    if opts.mask_dilate:
        r = opts.mask_dilate
        mask = F.max_pool2d(mask[:, None], 2 * r + 1, stride=1, padding=r)[:, 0]
    return mask


def edit_masks(model: Denoiser, x0: torch.Tensor, source_keys: list[str], targets: list[list[str]], opts: TranslationOptions) -> tuple[list[torch.Tensor], int]:
    """The edit mask of every (image, target): out[i] is (len(targets[i]),
    h, w), and the network evaluations it took."""
    diffs = difference_maps(model, x0, source_keys, targets, opts)
    evaluations = sum(opts.mask_draws * (1 + len(ts)) for ts in targets if ts)
    return [masks_from(d, opts) if len(d) else d for d in diffs], evaluations
