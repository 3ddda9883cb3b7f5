"""Arrays in files (typicality maps, translated maps): NumPy's own format,
written to a temporary name and renamed, never pickled."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np


def save_array(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
    os.replace(tmp, path)
    return path


def load_array(path: str | Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)
