"""Seconds one held-out check costs on photo-shapes' network (32 px, 10
labels, the default channels and patch), on 185 images as its `val` split
has: the label gain (128 images x 10 bands x 2 draws x 2 conditions) and
the quick accuracy (64 images x 4 draws x 10 labels). Measured 2026-12-05,
idle 2 cores: 4.0 s + 2.0 s.

    .venv/bin/python docs/experiments/checks-2026-12-05/check_cost.py
"""

import time

import torch

from diffmine_assets.mining.denoisers.tiny import TinyDenoiser
from diffmine_assets.mining.precision import resolve_precision
from diffmine_assets.mining.training.diagnostics import held_out_accuracy, label_gain

model = TinyDenoiser([f"l{i}" for i in range(10)], 32, channels=(64, 64, 64), patch=2)
x, cond = torch.randn(185, 3, 32, 32), torch.randint(1, 11, (185,))
dtype = resolve_precision("auto")
for _ in range(2):
    t0 = time.monotonic()
    label_gain(model, x, cond, dtype=dtype)
    t1 = time.monotonic()
    held_out_accuracy(model, x, cond, dtype=dtype)
    print(f"label gain {t1 - t0:.2f} s, quick accuracy {time.monotonic() - t1:.2f} s")
