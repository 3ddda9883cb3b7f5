"""Training the denoiser on a dataset, resumably and reproducibly.

Every random draw of step s (batch, label dropout, timesteps, noise) comes
from a generator seeded by (seed, s), so a run resumed from its last saved
step continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from .denoisers import load_denoiser
from .datasets.spec import TrainingOptions as TrainConfig
from .denoisers.base import Denoiser
from .tensors import to_model_range

STATE_FILE = "train_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"


class TrainingDiverged(RuntimeError):
    pass


@dataclass
class TrainResult:
    steps: int
    resumed_from: int
    seconds: float
    log: list[dict]


def _optimizer(model: Denoiser, cfg: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.module.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


def _save_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    tensors = {}
    sd = opt.state_dict()
    for pid, st in sd["state"].items():
        for name, value in st.items():
            tensors[f"{pid}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path)


def _load_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    flat = load_file(path)
    sd = opt.state_dict()
    state: dict = {}
    for key, value in flat.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    sd["state"] = state
    opt.load_state_dict(sd)


def save_state(model: Denoiser, opt, directory: Path, meta: dict) -> None:
    """Atomically replace the training state in `directory`."""
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save(tmp)
    _save_optimizer(opt, tmp / OPTIMIZER_FILE)
    (tmp / STATE_FILE).write_text(json.dumps(meta, indent=2))
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(directory, old)
    os.replace(tmp, directory)
    if old.exists():
        shutil.rmtree(old)


def load_state(directory: Path):
    """(model, meta, optimizer file) of a saved state, or None."""
    directory = Path(directory)
    if not (directory / STATE_FILE).exists():
        # a crash between the two renames of save_state leaves only ".old"
        old = directory.with_name(directory.name + ".old")
        if (old / STATE_FILE).exists():
            os.replace(old, directory)
        else:
            return None
    meta = json.loads((directory / STATE_FILE).read_text())
    return load_denoiser(directory), meta, directory / OPTIMIZER_FILE


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def _val_loss(model: Denoiser, x0: torch.Tensor, cond: torch.Tensor, seed: int) -> float:
    if len(x0) == 0:
        return float("nan")
    g = torch.Generator().manual_seed(seed + 7)
    t = torch.randint(0, model.num_train_timesteps, (len(x0),), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    with torch.inference_mode():
        pred = model.predict(model.add_noise(x0, eps, t), t, cond)
    return float(((pred - eps) ** 2).mean())


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
) -> TrainResult:
    """Train `model` to `cfg.steps`, saving every `cfg.save_every` steps to
    `state_dir` (with `meta`, which must match for a resume). `names` names
    each training image in errors. `stop_after` ends early (tests of resume)."""
    if len(pixels) == 0:
        raise ValueError("no training image")
    opt = _optimizer(model, cfg)
    start = 0
    log: list[dict] = []
    saved = load_state(state_dir)
    if saved is not None and saved[1].get("meta") == meta:
        model.module.load_state_dict(saved[0].module.state_dict())
        _load_optimizer(opt, saved[2])
        start = saved[1]["step"]
        log = saved[1].get("log", [])
    cond_all = model.condition_ids(label_keys)
    x_all = to_model_range(pixels)
    val_x = to_model_range(val_pixels) if val_pixels is not None and len(val_pixels) else None
    val_c = model.condition_ids(val_label_keys) if val_x is not None else None
    n = len(x_all)
    model.module.train()
    t0 = time.monotonic()
    window_t, window_images = time.monotonic(), 0
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    for step in range(start, end):
        g = _step_generator(cfg.seed, step)
        idx = torch.randint(0, n, (cfg.batch_size,), generator=g)
        x0 = x_all[idx]
        cond = cond_all[idx].clone()
        cond[torch.rand(cfg.batch_size, generator=g) < cfg.label_dropout] = 0
        t = torch.randint(0, model.num_train_timesteps, (cfg.batch_size,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        pred = model.predict(model.add_noise(x0, eps, t), t, cond)
        per_sample = ((pred - eps) ** 2).mean(dim=(1, 2, 3))
        loss = per_sample.mean()
        if not torch.isfinite(loss):
            bad = int(idx[(~torch.isfinite(per_sample)).nonzero()[0, 0]])
            raise TrainingDiverged(f"non-finite loss at step {step + 1} on image {names[bad]}; lower learning_rate or check that image")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window_images += cfg.batch_size
        done = step + 1
        if done % cfg.log_every == 0 or done == end:
            now = time.monotonic()
            rate = window_images / max(now - window_t, 1e-9)
            row = {
                "step": done,
                "loss": loss.item(),
                "val_loss": _val_loss(model, val_x, val_c, cfg.seed) if val_x is not None else float("nan"),
                "images_per_s": rate,
                "elapsed_s": now - t0,
                "eta_s": (cfg.steps - done) * cfg.batch_size / max(rate, 1e-9),
            }
            model.module.train()
            log.append(row)
            window_t, window_images = now, 0
            if progress:
                progress(row)
        if done % cfg.save_every == 0 or done == end:
            save_state(model, opt, state_dir, {"step": done, "meta": meta, "config": cfg.model_dump(), "log": log})
    model.module.eval()
    return TrainResult(steps=end, resumed_from=start, seconds=time.monotonic() - t0, log=log)

