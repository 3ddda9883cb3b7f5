"""Every denoiser backend, by the name `training.backend` gives it.

A backend is a module with one `Denoiser` subclass. Backends whose libraries
are an optional extra are imported only when a dataset uses them (the way
diffusers' pipelines import theirs): a missing library fails with one error
that names the extra to install. A new backend is a file and a line here
(and its name in `training.backend`'s choices, which a test holds to this list).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .base import Denoiser, saved_config

# name -> (module of this package, class, the pip extra its libraries come from)
BACKENDS: dict[str, tuple[str, str, str | None]] = {
    "tiny": ("tiny", "TinyDenoiser", None),
    "stable-diffusion": ("stable_diffusion", "StableDiffusionDenoiser", "sd"),
}


def backend(name: str) -> type[Denoiser]:
    """The class of backend `name`, imported on first use."""
    if name not in BACKENDS:
        raise ValueError(f"unknown denoiser backend {name!r}; known: {sorted(BACKENDS)}")
    module, cls, extra = BACKENDS[name]
    try:
        return getattr(importlib.import_module(f".{module}", __package__), cls)
    except ImportError as exc:
        if extra is None:
            raise
        raise ImportError(f"the {name} backend needs the [{extra}] extra: pip install 'diffmine[{extra}]' ({exc})") from None


def new_denoiser(options, labels: list[str], resolution: int, seed: int | None = None, label_texts: dict[str, str] | None = None) -> Denoiser:
    """A fresh network as the training options (a `TrainingOptions`) describe
    it; `label_texts` (key -> label text) words the prompts of a text-conditioned backend."""
    return backend(options.backend).from_options(options, labels, resolution, label_texts or {}, options.seed if seed is None else seed)


def load_denoiser(directory: str | Path) -> Denoiser:
    """The denoiser saved in `directory`, by the backend that saved it."""
    name = saved_config(directory).get("backend")
    if name not in BACKENDS:
        raise ValueError(f"{directory}: unknown denoiser backend {name!r}; known: {sorted(BACKENDS)}")
    return backend(name).load(Path(directory))


def untrained_like(directory: str | Path, options) -> Denoiser:
    """The control of the checkpoint in `directory` that never learnt the
    labels (the backend decides what that is: the same network untrained,
    or the pretrained model it was finetuned from)."""
    return backend(saved_config(directory)["backend"]).untrained_like(Path(directory), options)
