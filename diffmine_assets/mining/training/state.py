"""A training run's state on disk: weights, optimizer, averaged and best
weights, and the snapshots along the run, saved atomically so a killed run
resumes where it was."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..denoisers.base import Denoiser
from ..denoisers.registry import load_denoiser

STATE_FILE = "train_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
EMA_FILE = "ema.safetensors"
BEST_FILE = "best.safetensors"
SNAPSHOTS_DIR = "snapshots"


def snapshot_steps(total: int, n: int) -> set[int]:
    """The untrained start and n evenly spaced steps up to the last."""
    return {0} | {round(total * i / n) for i in range(1, n + 1)} if n else set()


def snapshots_dir(state_dir: Path) -> Path:
    """Beside the training state (which save_state replaces whole), so the
    snapshots of a run survive its saves and a resume."""
    state_dir = Path(state_dir)
    return state_dir.with_name(f"{state_dir.name}-{SNAPSHOTS_DIR}")


def save_snapshot(view: Denoiser, state_dir: Path, step: int) -> None:
    view.save(snapshots_dir(state_dir) / f"step-{step:07d}")


def save_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    tensors = {}
    sd = opt.state_dict()
    for pid, st in sd["state"].items():
        for name, value in st.items():
            tensors[f"{pid}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path)


def load_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    flat = load_file(path)
    sd = opt.state_dict()
    state: dict = {}
    for key, value in flat.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    sd["state"] = state
    opt.load_state_dict(sd)


def save_state(model: Denoiser, opt, directory: Path, meta: dict, extra: dict[str, dict] | None = None) -> None:
    """Atomically replace the training state in `directory` (`extra`: more
    safetensors files, name -> tensors)."""
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save(tmp)
    save_optimizer(opt, tmp / OPTIMIZER_FILE)
    for name, tensors in (extra or {}).items():
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp / name)
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
