"""Exponential moving average of the weights that train, and the model
seen with it: what training publishes and what its held-out checks score.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from ..denoisers.base import Denoiser


class Ema:
    """Exponential moving average of the weights that train, with the usual
    warm-up of the decay (1 + s) / (10 + s), so early averages do not
    remember the random initialisation. Only trained parameters are
    averaged: with LoRA that is the adapters (a few MB), not the frozen
    860 M-parameter UNet under them, which a copy of the whole state dict
    would duplicate in memory and in every saved state."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = trained_weights(module)

    def load(self, saved: dict[str, torch.Tensor]) -> None:
        # a state saved before only trained parameters were averaged holds the frozen ones too: they never changed
        self.shadow.update({k: v for k, v in saved.items() if k in self.shadow})

    def update(self, module: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, p in module.named_parameters():
                if k in self.shadow:
                    self.shadow[k].mul_(d).add_(p.detach().float(), alpha=1 - d)

    def copy_to(self, module: torch.nn.Module) -> None:
        params = dict(module.named_parameters())
        with torch.no_grad():
            for k, v in self.shadow.items():
                params[k].copy_(v.to(params[k].dtype))


def trained_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone().float() for k, p in module.named_parameters() if p.requires_grad}


@contextmanager
def averaged(model: Denoiser, ema: "Ema | None"):
    """The model as it would be published, with the averaged weights when
    EMA is on: the average and the raw weights trade places (no copy), and
    trade back after, so training continues on the raw ones. A deep copy of
    the model would also copy what never trains (at Stable Diffusion's size
    the VAE, the text encoder and a LoRA's frozen UNet: 4 GB at every check)."""
    if ema is None:
        yield model
        return
    params = dict(model.module.named_parameters())
    swapped = [k for k, v in ema.shadow.items() if v.dtype == params[k].dtype]
    copied = {k: params[k].detach().clone() for k in ema.shadow if k not in swapped}  # a half-precision weight: a copy
    with torch.no_grad():
        for k in swapped:
            params[k].data, ema.shadow[k] = ema.shadow[k], params[k].data
        for k in copied:
            params[k].copy_(ema.shadow[k])
    try:
        yield model
    finally:
        with torch.no_grad():
            for k in swapped:
                params[k].data, ema.shadow[k] = ema.shadow[k], params[k].data
            for k, v in copied.items():
                params[k].copy_(v)
