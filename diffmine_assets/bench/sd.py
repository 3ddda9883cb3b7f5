"""`diffmine bench sd`: the stable-diffusion backend's speed, measured.

A random pipeline of the chosen shape (`sd15`: Stable Diffusion 1.5's own
shapes, about 860 M UNet parameters; `tiny`: seconds on a CPU, the smoke run)
is written once under the work folder; then, at each precision: finetuning
steps per second (AdamW on the whole UNet, or LoRA), typicality images per
second with the engine, and the published loop (one image at a time, noise in
batches of 10, label and null together) at the same precision and N, so the
engine's gain is on equal footing. Random weights: speed, not quality.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..mining.config.options import TypicalityOptions
from ..mining.denoisers.registry import backend
from ..mining.denoisers.sd_layout import write_random_pipeline
from ..mining.precision import autocast, resolve_precision
from ..mining.typicality.estimator import dataset_noise
from ..mining.typicality.score import score_labels
from . import sd_graph
from .common import work_folder


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def finetune_rate(model, x0: torch.Tensor, precision: str, steps: int, batch: int) -> float:
    params = [p for p in model.module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-6)
    dtype = resolve_precision(precision)
    scaler = torch.amp.GradScaler(enabled=dtype == torch.float16 and model.device.type == "cuda")
    cond = torch.tensor([i % (len(model.labels) + 1) for i in range(batch)])
    model.module.train()

    def step():
        idx = torch.randint(0, len(x0), (batch,))
        t = torch.randint(0, model.num_train_timesteps, (batch,))
        eps = torch.randn_like(x0[idx])
        with autocast(model.module, dtype):
            pred = model.predict(model.add_noise(x0[idx], eps, t), t, cond)
        loss = ((pred.float() - eps) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    step()
    _sync(model.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(model.device)
    model.module.eval()
    return steps / (time.perf_counter() - t0)


def published_rate(model, x0: torch.Tensor, key: str, n: int, opts: TypicalityOptions, precision: str) -> float:
    """Images per second of the reference loop: per image, noise in batches
    of 10, label and null conditions concatenated (a batch of 20)."""
    T = model.num_train_timesteps
    g = torch.Generator().manual_seed(0)
    cl, cn = model.condition_ids([key]), model.condition_ids([None])
    _sync(model.device)
    t0 = time.perf_counter()
    with torch.inference_mode(), autocast(model.module, resolve_precision(precision)):
        for i in range(len(x0)):
            for s in range(0, n, 10):
                k = min(10, n - s)
                t = torch.randint(int(opts.t_min * T), int(opts.t_max * T), (k,), generator=g)
                eps = torch.randn((k, *x0.shape[1:]), generator=g)
                xt = model.add_noise(x0[i : i + 1].expand(k, -1, -1, -1), eps, t)
                out = model.predict(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([cl.expand(k), cn.expand(k)]))
                ((out[:k].float() - eps) ** 2).mean(1) - ((out[k:].float() - eps) ** 2).mean(1)
    _sync(model.device)
    return len(x0) / (time.perf_counter() - t0)


def sd_benchmark(work: Path, shape: str = "sd15", resolution: int = 512, precisions: tuple[str, ...] = ("float16", "bfloat16"),
                 images: int = 8, n_samples: int = 32, steps: int = 10, batch: int = 4, lora_rank: int = 0, log=print) -> dict:
    pipe = work / f"random-{shape}"
    if not (pipe / "model_index.json").exists():
        t0 = time.monotonic()
        write_random_pipeline(pipe, shape)
        log(f"bench sd: wrote a random {shape} pipeline to {pipe} ({time.monotonic() - t0:.0f} s)")
    labels = ["a", "b"]
    model = backend("stable-diffusion")(labels, resolution, model_path=pipe, prompts={"a": "An image of a.", "b": "An image of b."},
                                    null_prompt="An image.", lora_rank=lora_rank)
    device = torch.cuda.get_device_name() if model.device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    x0 = model.encode(torch.rand(images, 3, resolution, resolution) * 2 - 1)
    out = {"shape": shape, "resolution": resolution, "latent": list(x0.shape[1:]), "device": device, "images": images, "n_samples": n_samples,
           "unet_parameters": sum(p.numel() for p in model.module.parameters()), "lora_rank": lora_rank, "batch": batch, "runs": []}
    for precision in precisions:
        if precision == "float16" and model.device.type != "cuda":
            log("bench sd: float16 skipped (no GPU)")
            continue
        opts = TypicalityOptions(n_samples=n_samples, groups=4, precision=precision, batch_size=64, label_matrix="none")
        row = {"precision": precision, "finetune_steps_per_s": round(finetune_rate(model, x0, precision, steps, batch), 3)}
        # the noise set (and its timestep pilot) is drawn once per dataset in the graph: timed apart
        t0 = time.perf_counter()
        noise = dataset_noise(model, x0, ["a"] * len(x0), opts)
        _sync(model.device)
        row["noise_pilot_s"] = round(time.perf_counter() - t0, 2)
        score_labels(model, x0[:1], opts, under=["a"], noise=noise)  # warm-up
        _sync(model.device)
        t0 = time.perf_counter()
        score_labels(model, x0, opts, under=["a"] * len(x0), noise=noise)
        _sync(model.device)
        row["typicality_images_per_s"] = round(images / (time.perf_counter() - t0), 3)
        published_rate(model, x0[:1], "a", 10, opts, precision)  # the same warm-up as the engine's (kernels, autocast caches)
        row["published_loop_images_per_s"] = round(published_rate(model, x0, "a", n_samples, opts, precision), 3)
        row["engine_over_published"] = round(row["typicality_images_per_s"] / row["published_loop_images_per_s"], 2)
        log(f"  {precision}: {row}")
        out["runs"].append(row)
    return out


def run(project, args, log) -> dict:
    if args.graph:
        return sd_graph.run(project, args, log)
    return sd_benchmark(work_folder(project, args, "sd"), args.shape, args.resolution, tuple(args.precisions.split(",")), images=args.images,
                        lora_rank=args.lora_rank or 0, log=log)
