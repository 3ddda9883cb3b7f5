"""How a time ceiling is spent: how many held-out checks it affords, after
how many steps a run is sized, and how each check sizes the steps left."""

from __future__ import annotations

# The held-out checks may take at most this share of the time ceiling: 20
# checks of 6.3 s each were half of a 3-minute run and a fifth of an
# 11-minute one on photo-shapes (docs/QUALITY.md, "What the checks cost"),
# time the steps did not get. Fewer checks are run where each costs more.
CHECK_SHARE = 0.1

# A time budget's step count is fixed after this many steps (the first
# timed apart: it pays one-off costs), or once `timed_s` of the budget has
# passed if that comes first (slow steps at 512 px), and never after the
# warm-up. Five steps sized two runs of the same 11 minutes on photo-shapes
# at 3,008 and 2,243 steps, the second's first steps slowed (issue 28); 29
# timed steps average such a start out.
TIMED_STEPS = 30


def checks_within(ceiling_s: float, check_s: float, most: int) -> int:
    """How many held-out checks fit in CHECK_SHARE of a time ceiling, each
    taking `check_s`: at most `most`, at least 2 (a curve has two ends)."""
    return max(2, min(most, int(CHECK_SHARE * ceiling_s / max(check_s, 1e-9))))


def replanned_total(budget_s: float, elapsed_s: float, steps_s: float, steps_done: int, done: int, check_s: float, checks_left: int) -> int:
    """The step count that ends a run at its time ceiling, from what its
    steps and checks have taken so far: `elapsed_s` of the ceiling spent
    (set-up and checks included), `steps_s` of it in `steps_done` steps,
    `check_s` a check, `checks_left` still to come. At least one more step."""
    per_step = steps_s / max(steps_done, 1)
    left = budget_s - elapsed_s - checks_left * check_s
    return done + max(1, int(left / max(per_step, 1e-9)))
