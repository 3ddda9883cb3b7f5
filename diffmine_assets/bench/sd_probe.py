"""The memory and time of one unit of work of each stage at one batch size,
each in a fresh process so its peak is its own: `probe` below, run as
`python -m diffmine_assets.bench.sd_probe '<json>'` by sd_graph.py.

Units: `encode` (the VAE's encoder: training and every stage's first look
at an image), `decode` (the VAE's decoder: translations), `forward` (one
UNet evaluation without gradients: typicality, features, translation steps)
and `train` (one optimizer step as training.loop holds it: weights,
gradients, AdamW's two moments and the EMA copy of what trains; the whole
UNet, or LoRA adapters with `lora_rank`). The figures: the process's peak
resident memory once the pipeline is loaded and after the unit (on a GPU,
torch's peak allocated memory too), and the unit's seconds (for `train`, the
second step, after the first allocated the optimizer's state). Precision is
the graph's own by default (`auto`: bfloat16 autocast where native, as
training and typicality run; the weights stay float32).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from ..mining.denoisers.stable_diffusion import StableDiffusionDenoiser
from ..mining.precision import autocast, resolve_precision
from ..usage import StepUsage, peak_rss_mib
from .sd import _sync

UNITS = ("encode", "decode", "forward", "train")


def probe(pipeline: str | Path, unit: str, batch: int, resolution: int = 512, lora_rank: int = 0, precision: str = "auto",
          checkpointing: bool = False, ema: bool = True) -> dict:
    if unit not in UNITS:
        raise ValueError(f"unit {unit!r}: expected one of {UNITS}")
    model = StableDiffusionDenoiser(["a", "b"], resolution, model_path=pipeline, prompts={"a": "An image of a.", "b": "An image of b."},
                                    null_prompt="An image.", lora_rank=lora_rank if unit == "train" else 0, gradient_checkpointing=False)
    if checkpointing:
        model.net.enable_gradient_checkpointing()
    device, dtype = model.device, resolve_precision(precision)
    loaded = peak_rss_mib()
    usage = StepUsage()
    g = torch.Generator().manual_seed(0)
    side = resolution // model.vae_scale
    z = torch.randn(batch, 4, side, side, generator=g).to(device)
    t = torch.randint(0, model.num_train_timesteps, (batch,), generator=g).to(device)
    cond = model._embeds[torch.tensor([i % 3 for i in range(batch)], device=model._embeds.device)].to(device)
    seconds = None
    if unit == "train":
        model.net.train()
        params = [p for p in model.net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-6)
        shadow = [p.detach().clone().float() for p in params] if ema else []

        def step():
            with autocast(model.net, dtype):
                pred = model.net(z, t, encoder_hidden_states=cond).sample
            loss = ((pred.float() - z) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for s, p in zip(shadow, params):
                    s.mul_(0.999).add_(p.detach().float(), alpha=0.001)

        step()
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        seconds = time.perf_counter() - t0
        trainable = sum(p.numel() for p in params)
    else:
        with torch.inference_mode(), autocast(model.net if unit == "forward" else model.vae, dtype):
            t0 = time.perf_counter()
            if unit == "encode":
                model.vae.encode(torch.rand(batch, 3, resolution, resolution, generator=g).to(device) * 2 - 1).latent_dist.mean
            elif unit == "decode":
                model.vae.decode(z / model.vae.config.scaling_factor).sample
            else:
                model.net(z, t, encoder_hidden_states=cond).sample
            _sync(device)
            seconds = time.perf_counter() - t0
        trainable = 0
    figures = usage.figures()
    return {"unit": unit, "batch": batch, "resolution": resolution, "lora_rank": lora_rank if unit == "train" else None, "precision": str(dtype).removeprefix("torch."),
            "checkpointing": checkpointing, "device": str(device), "seconds": round(seconds, 2), "loaded_rss_mib": round(loaded, 1) if loaded else None,
            "peak_rss_mib": figures.get("step_peak_rss_mib", figures.get("process_peak_rss_mib")), "peak_gpu_mib": figures.get("step_peak_gpu_mib"),
            "trainable_parameters": trainable, "unet_parameters": sum(p.numel() for p in model.net.parameters())}


if __name__ == "__main__":
    print(json.dumps(probe(**json.loads(sys.argv[1]))), flush=True)
