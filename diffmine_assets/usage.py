"""What a step costs the machine it ran on: its seconds and its peak memory,
recorded in the metadata of the assets that run a network, so the UI answers
"how much memory does typicality need at this size?" and `diffmine bench sd
--graph` reads its per-stage table from the runs themselves.

Steps of a run share one process (deployment.py), so the process's peak
resident memory is reset when a step starts (Linux's /proc/self/clear_refs)
and read when it ends; it includes what the process already held (torch, the
model kept between steps). Where the reset is refused the figure is the
process's peak so far and its name says so. On a GPU, torch's own peak of
allocated memory is reset and read the same way.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def _reset_peak_rss() -> bool:
    try:
        CLEAR_REFS.write_text("5")  # 5: reset the peak resident set size to the current one (Linux >= 4.0)
        return True
    except OSError:
        return False


def peak_rss_mib() -> float | None:
    """This process's peak resident memory (VmHWM) since start or the last
    reset; None off Linux."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class StepUsage:
    """Started when a step starts; `figures()` when it ends."""

    def __init__(self):
        self.scoped = _reset_peak_rss()
        self.gpu = torch.cuda.is_available()
        if self.gpu:
            torch.cuda.reset_peak_memory_stats()
        self.t0 = time.monotonic()

    def figures(self) -> dict[str, float]:
        out = {"step_seconds": round(time.monotonic() - self.t0, 2)}
        rss = peak_rss_mib()
        if rss is not None:
            out["step_peak_rss_mib" if self.scoped else "process_peak_rss_mib"] = round(rss, 1)
        if self.gpu:
            out["step_peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return out
