"""Translating images across labels (METHOD.md section 5).

An image is inverted with deterministic DDIM (diffusers' `DDIMInverseScheduler`)
under the null condition (or its own label), then regenerated under the target
label with classifier-free guidance (`DDIMScheduler`). With `method: pnp`
(Plug-and-Play, Tumanyan et al. 2023) every regeneration step also runs the
source's inverted latent of that step through the network, and for the first
steps the target pass takes the source pass's output of one decoder residual
block and the queries and keys of the decoder's self-attention layers: the
layout and the objects' identity come from the source, the appearance from the
target label. Injection is done by forward hooks on diffusers' own modules
(`Denoiser.injection_points`), so every backend built on a diffusers UNet has it.
With `method: masked` (DiffEdit, Couairon et al. 2023; masks.py) the image is
regenerated only inside the edit mask of its (source, target) pair: after
every step the latent outside the mask is the source's inverted latent of the
next noise level, and after the last step the source itself: outside the
mask the output is the source's, exactly with `keep_outside: source`, shifted
per channel by the label-wide tint with `layout` (in latent space for Stable
Diffusion, then decoded). `masked-pnp` also injects.

Everything is deterministic (DDIM with eta 0, no noise drawn): the same
checkpoint, image and options give the same pixels.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..config.options import TranslationOptions
from ..denoisers.base import Denoiser
from ..precision import autocast, resolve_precision
from .masks import edit_masks

if TYPE_CHECKING:
    from diffusers import DDIMInverseScheduler, DDIMScheduler


def schedulers(model: Denoiser, opts: TranslationOptions) -> tuple[DDIMScheduler, DDIMInverseScheduler]:
    """DDIM and inverse DDIM on the model's training schedule; no clipping of
    the predicted image (clipping breaks inversion)."""
    from diffusers import DDIMInverseScheduler, DDIMScheduler  # lazily: see denoisers/tiny.py

    cfg = {k: v for k, v in model.schedule_config().items() if not k.startswith("_")}
    cfg.update(clip_sample=False, timestep_spacing="leading", steps_offset=0)

    def accepted(cls) -> dict:  # the training scheduler's config has keys DDIM does not take
        names = inspect.signature(cls.__init__).parameters
        return {k: v for k, v in cfg.items() if k in names}

    forward = DDIMScheduler(**accepted(DDIMScheduler))
    inverse = DDIMInverseScheduler(**accepted(DDIMInverseScheduler))
    forward.set_timesteps(opts.steps)
    inverse.set_timesteps(opts.steps)
    return forward, inverse


def schedule(model: Denoiser, opts: TranslationOptions) -> tuple[DDIMScheduler, DDIMInverseScheduler, list[int]]:
    """The two schedulers and the regeneration timesteps, noisiest first:
    all of them, or the `strength` share nearest to the image."""
    forward, inverse = schedulers(model, opts)
    steps = [int(t) for t in forward.timesteps]
    keep = max(1, round(opts.strength * len(steps)))
    return forward, inverse, steps[len(steps) - keep :]


class Injection:
    """Forward hooks that, while on, give every group of rows of a batch the
    first group's output (the batch is [source rows, target rows...], each
    group the same number of rows)."""

    def __init__(self, model: Denoiser, block: int, groups: int):
        self.resnet, self.qk = model.injection_points(block)
        self.groups = groups
        self.features = False
        self.attention = False
        self._handles: list = []

    def _copy(self, which: str):
        def hook(_module, _inputs, output):
            if not getattr(self, which):
                return None
            n = output.shape[0] // self.groups
            return torch.cat([output[:n]] * self.groups, dim=0)

        return hook

    def __enter__(self) -> "Injection":
        self._handles.append(self.resnet.register_forward_hook(self._copy("features")))
        for m in self.qk:
            self._handles.append(m.register_forward_hook(self._copy("attention")))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


@dataclass
class Inversion:
    """The inverted latents of a batch of images: `latents[t]` is the latent
    at the noise level of regeneration timestep t."""

    latents: dict[int, torch.Tensor]
    evaluations: int
    x0: torch.Tensor | None = None  # the images themselves: the level after the last regeneration step


def invert(model: Denoiser, x0: torch.Tensor, cond: torch.Tensor, opts: TranslationOptions, timesteps: list[int] | None = None) -> Inversion:
    """DDIM inversion of `x0` (model space) under `cond`, up to the first
    (noisiest) of the regeneration `timesteps`."""
    forward, inverse, steps = schedule(model, opts)
    steps = timesteps or steps
    top = max(steps)
    dtype = resolve_precision(opts.precision)
    latents: dict[int, torch.Tensor] = {}
    x = x0.float()
    evaluations = 0
    with torch.inference_mode(), autocast(model.module, dtype):
        for t in inverse.timesteps.tolist():
            if t > top:
                break
            eps = model.predict(x, torch.full((len(x),), t, dtype=torch.long), cond).float()
            evaluations += len(x)
            x = inverse.step(eps, t, x).prev_sample
            latents[int(t)] = x
    return Inversion(latents, evaluations, x0.float())


@dataclass
class TranslationResult:
    images: torch.Tensor  # (P, C, R, R) model space
    seconds: float
    evaluations: int
    options: dict = field(default_factory=dict)
    masks: torch.Tensor | None = None  # (P, h, w) of 0 and 1 with a masked method: where each output was let change


def regenerate(model: Denoiser, inversion: Inversion, index: torch.Tensor, source_cond: torch.Tensor, target_cond: torch.Tensor,
               opts: TranslationOptions, method: str | None = None, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Regenerate the inverted images `index` (rows of the inversion) under
    `target_cond`, one target per row; `method` overrides `opts.method`.
    With `mask` ((m, h, w), 1 where the row may change) the rest of each
    latent is the source's at every level."""
    method = method or opts.method
    forward, _, steps = schedule(model, opts)
    dtype = resolve_precision(opts.precision)
    m = len(index)
    null = model.condition_ids([None] * m)
    x = inversion.latents[steps[0]][index].clone()
    evaluations = 0
    pnp = method in ("pnp", "masked-pnp")
    keep = None if mask is None else (1 - mask[:, None].float())
    n_feat = round(opts.feature_injection * len(steps))
    n_attn = round(opts.attention_injection * len(steps))
    hooks = Injection(model, opts.feature_block, 3) if pnp else contextlib.nullcontext()
    with torch.inference_mode(), autocast(model.module, dtype), hooks:
        for i, t in enumerate(steps):
            tt = torch.full((m,), t, dtype=torch.long)
            if pnp:
                hooks.features = i < n_feat
                hooks.attention = i < n_attn
                source = inversion.latents[t][index]
                eps = model.predict(torch.cat([source, x, x]), tt.repeat(3), torch.cat([source_cond, null, target_cond])).float()
                uncond, cond = eps[m : 2 * m], eps[2 * m :]
                evaluations += 3 * m
            else:
                eps = model.predict(torch.cat([x, x]), tt.repeat(2), torch.cat([null, target_cond])).float()
                uncond, cond = eps[:m], eps[m:]
                evaluations += 2 * m
            guided = uncond + opts.guidance * (cond - uncond)
            x = forward.step(guided, t, x).prev_sample
            if keep is not None:
                source = inversion.latents[steps[i + 1]][index] if i + 1 < len(steps) else inversion.x0[index]
                if opts.keep_outside == "layout":
                    source = source + _mean_shift(x - source, keep)
                x = x * (1 - keep) + source * keep
    return x, evaluations


def _mean_shift(change: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Per row and channel, the mean of `change` over the cells `where` is
    1: the label-wide part of what the regeneration changed there (a tint),
    as a constant to add."""
    area = where.sum(dim=(-2, -1), keepdim=True).clamp_min(1)
    return (change * where).sum(dim=(-2, -1), keepdim=True) / area


def translate(model: Denoiser, x0: torch.Tensor, source_keys: list[str], targets: list[list[str]], opts: TranslationOptions,
              method: str | None = None, progress=None) -> tuple[list[list[torch.Tensor]], TranslationResult]:
    """Each image `x0[i]` (model space, label `source_keys[i]`) translated into
    every label of `targets[i]`: out[i][j] is image i under targets[i][j].
    Each image is inverted once, whatever the number of its targets."""
    model.check_labels(list(source_keys) + [k for ts in targets for k in ts])
    model.for_inference()
    t0 = time.monotonic()
    inv_cond = model.condition_ids(list(source_keys) if opts.invert_with == "source" else [None] * len(source_keys))
    evaluations = 0
    latents: dict[int, list[torch.Tensor]] = {}
    for s in range(0, len(x0), opts.batch_size):
        part = invert(model, x0[s : s + opts.batch_size], inv_cond[s : s + opts.batch_size], opts)
        evaluations += part.evaluations
        for t, lat in part.latents.items():
            latents.setdefault(t, []).append(lat)
    inversion = Inversion({t: torch.cat(v) for t, v in latents.items()}, evaluations, x0.float())
    pairs = [(i, k) for i, ts in enumerate(targets) for k in ts]
    method = method or opts.method
    masks = None
    if method.startswith("masked"):
        per_image, n = edit_masks(model, x0, list(source_keys), targets, opts)
        masks = torch.cat([m for m in per_image if len(m)]) if pairs else None
        evaluations += n
    rows_per_pass = max(1, opts.batch_size // (3 if method in ("pnp", "masked-pnp") else 2))
    outputs: list[torch.Tensor] = []
    for s in range(0, len(pairs), rows_per_pass):
        chunk = pairs[s : s + rows_per_pass]
        index = torch.tensor([i for i, _ in chunk], dtype=torch.long)
        out, n = regenerate(model, inversion, index, inv_cond[index], model.condition_ids([k for _, k in chunk]), opts, method,
                            None if masks is None else masks[s : s + len(chunk)])
        outputs.append(out)
        evaluations += n
        if progress:
            progress(min(s + rows_per_pass, len(pairs)), len(pairs))
    flat = torch.cat(outputs) if outputs else x0[:0]
    result = [[None] * len(ts) for ts in targets]
    for (i, k), img in zip(pairs, flat):
        result[i][targets[i].index(k)] = img
    return result, TranslationResult(flat, time.monotonic() - t0, evaluations, opts.result_options(), masks)


def reconstruct(model: Denoiser, x0: torch.Tensor, keys: list[str], opts: TranslationOptions) -> torch.Tensor:
    """Inversion then regeneration under the image's own label without
    guidance or injection: what inversion loses (the round trip)."""
    plain = opts.model_copy(update={"guidance": 1.0, "method": "regenerate", "invert_with": "source"})
    out, _ = translate(model, x0, keys, [[k] for k in keys], plain)
    return torch.stack([o[0] for o in out])


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Model-range pixels (C, R, R) in [-1, 1] to an (R, R, 3) uint8 array."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy().astype(np.uint8)
