"""Live progress of the long steps on the terminal of `diffmine materialize`.

The command line runs its Dagster runs in its own process, so the assets can
hand their progress (training step, loss, ETA; typicality rows per second)
to a bar drawn on that terminal, besides logging it to the run's event log.
In runs launched by the UI or the daemon no bar is installed and `report`
does nothing. Only a terminal gets a bar: a pipe or a CI log gets the one
line per run of the runner, not hundreds of redrawn lines.
"""

from __future__ import annotations

import shutil
import sys
import time
from contextlib import contextmanager
from typing import Callable

_sink: Callable[[str, int, int, str], None] | None = None


def report(stage: str, done: int, total: int, detail: str = "") -> None:
    if _sink is not None:
        _sink(stage, done, total, detail)


def eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class _Bar:
    def __init__(self, stream):
        self.stream = stream
        self.shown = False
        self.last = 0.0

    def __call__(self, stage: str, done: int, total: int, detail: str) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.2:
            return
        self.last = now
        width = shutil.get_terminal_size((100, 20)).columns
        cells = 24
        filled = int(cells * done / max(total, 1))
        line = f"  {stage:<11s} [{'#' * filled}{'.' * (cells - filled)}] {done}/{total}  {detail}"
        self.stream.write("\r" + line[: width - 1].ljust(width - 1))
        self.shown = True
        if done >= total:
            self.clear()
        self.stream.flush()

    def clear(self) -> None:
        if self.shown:
            width = shutil.get_terminal_size((100, 20)).columns
            self.stream.write("\r" + " " * (width - 1) + "\r")
            self.stream.flush()
            self.shown = False


@contextmanager
def terminal_progress(enabled: bool = True, stream=None):
    global _sink
    stream = stream or sys.stderr
    if not enabled or not stream.isatty():
        yield
        return
    bar = _Bar(stream)
    previous, _sink = _sink, bar
    try:
        yield
    finally:
        bar.clear()
        _sink = previous
