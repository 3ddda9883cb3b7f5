"""Shared fixtures: small real projects on disk (config, images, instance)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from dagster import BetaWarning, PreviewWarning

warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)

REPO = Path(__file__).resolve().parents[1]


def write_image(path: Path, size=(40, 40), mode="RGB", seed=0, fmt=None, **save_kw) -> Path:
    """A small image with random content (so two calls never collide by hash
    unless they share a seed)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    if mode == "I;16":
        arr = rng.integers(0, 65535, size=(h, w), dtype=np.uint16)
        img = Image.fromarray(arr)  # uint16 arrays become mode I;16
    elif mode == "L":
        img = Image.fromarray(rng.integers(0, 255, size=(h, w), dtype=np.uint8), "L")
    elif mode == "RGBA":
        img = Image.fromarray(rng.integers(0, 255, size=(h, w, 4), dtype=np.uint8), "RGBA")
    elif mode == "P":
        img = Image.fromarray(rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8), "RGB").convert("P", palette=Image.ADAPTIVE, colors=16)
    else:
        img = Image.fromarray(rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8), "RGB")
    img.save(path, format=fmt, **save_kw)
    return path


def write_config(root: Path, datasets: list[dict]) -> Path:
    cfg = {"lake": "lake", "catalog": "catalog.duckdb", "datasets": datasets}
    path = root / "diffmine.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    (root / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    return path


# Options that keep a whole-graph run to seconds: a tiny real model, briefly trained.
FAST = {
    "training": {"steps": 30, "batch_size": 16, "save_every": 10, "log_every": 10},
    # every image in the label matrix: the small sets hold too few held-out images to cover every label
    "typicality": {"n_samples": 8, "groups": 2, "batch_size": 32, "label_matrix": "all"},
    "patches": {"window_px": 14, "stride_px": 4, "per_image": 3, "per_label": 10},
    "translation": {"images": 2, "steps": 6, "top": 12, "k": 3, "mask_draws": 4},
}
SMALL_BUILTIN = {"name": "builtin", "kind": "builtin", "options": {"images_per_label": 8, "seed": 3, "resolution": 16}, **FAST}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with a small built-in dataset; DAGSTER_HOME points at it."""
    path = write_config(tmp_path, [SMALL_BUILTIN])
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("DIFFMINE_CONFIG", str(path))
    return path


@pytest.fixture
def instance(project):
    from dagster import DagsterInstance

    inst = DagsterInstance.get()
    yield inst
    inst.dispose()
