"""Every figure beside the level it must beat: what `diffmine eval` prints.

A figure must beat its computed chance level and its control (the shuffled
or untrained model for mining; for translations, the source left
untranslated); the level to beat is the stronger of those. A translation's
paired difference from a control (plain regeneration for the layout) clears
when its 95 % interval lies above zero; so does a mining figure measured
image by image (accuracy, top-1, pixel AP): its paired difference from the
level it must beat, resampled over images, must lie above zero. Nothing
here is assumed: a figure with neither a chance level nor a control is
listed as such, one without an interval is judged by its value alone and
says so."""

from __future__ import annotations

from .goals import TRANSLATION_MARGINS, TRANSLATION_METRICS

# lower is better for these
LOWER_IS_BETTER = ("distractor_share_top50", "distractor_top3_share", "distractor_share_top50_correspondence")
# a translation's label change is bounded above by plain regeneration (free to redraw everything):
# it must beat the untranslated source; regeneration's figure is shown beside it, not to beat
# layout against regeneration is judged by its paired difference and interval (a row of its own), never by a bare `>`
TRANSLATION_LEVELS = {"translation_target_win": ("chance",), "element_swap_rate": ("chance",), "layout_ssim": ("chance",)}
NOT_FIGURES = ("labels", "images", "translations", "accuracy_chance", "dataset", "checkpoint_id", "localisation_labels")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def verdicts(figures: dict) -> list[dict]:
    """One row per figure: figure, model, level (to beat), against (what
    the level is), low/high (an interval, where measured), cleared (None:
    nothing to beat)."""
    chance = figures.get("chance") or {}
    control = figures.get("control") or {}
    regeneration = figures.get("translation_control") or {}
    gaps = figures.get("gaps") or {}
    rows = []
    for name, value in figures.items():
        if not _number(value) or name in NOT_FIGURES or name.endswith(("_images", "_translations")) or "_over_" in name:
            continue
        lower = name in LOWER_IS_BETTER
        if name in TRANSLATION_METRICS:
            sources = TRANSLATION_LEVELS.get(name, ())
            candidates = [(chance.get(name), "untranslated source" if name != "layout_ssim" else "chance: another image of its label", None)] if "chance" in sources else []
            if "translation_control" in sources:
                candidates.append((regeneration.get(name), "plain regeneration", None))
        else:
            candidates = [(chance.get(name), "chance", f"{name}_minus_chance"),
                          (control.get(name), f"{control.get('kind', 'control')} control", f"{name}_minus_{control.get('kind')}")]
        candidates = [c for c in candidates if _number(c[0])]
        row = {"figure": name, "model": value, "level": None, "against": None, "low": None, "high": None, "cleared": None}
        if candidates:
            level, against, gap_name = (min if lower else max)(candidates, key=lambda c: c[0])
            row.update(level=level, against=against, cleared=value < level if lower else value > level)
            gap = gaps.get(gap_name) if gap_name else None
            if gap and gap.get("low") is not None:
                # measured image by image: cleared only when the paired difference's interval lies above zero
                row.update(low=gap["low"], high=gap["high"], cleared=gap["low"] > 0, interval="difference")
        if name in TRANSLATION_METRICS and _number(regeneration.get(name)) and "translation_control" not in TRANSLATION_LEVELS.get(name, ()):
            row["beside"] = f"plain regeneration {regeneration[name]:.4f}"
        rows.append(row)
    for name, gap in gaps.items():
        if not name.startswith(TRANSLATION_METRICS):
            continue  # a mining figure's difference is shown on the figure's own row
        measured = gap.get("low") is not None
        margin = TRANSLATION_MARGINS.get(name)  # a non-inferiority margin: the interval must stay above it, not above zero
        level = 0.0 if margin is None else margin
        against = "no difference" if margin is None else f"a difference of {margin:g}"
        rows.append({"figure": name, "model": gap["difference"], "level": level, "gap": True,
                     "against": f"{against} (paired, 95 % interval over images)" if measured else f"{against} (too few images for an interval: {gap['images']})",
                     "low": gap.get("low"), "high": gap.get("high"),
                     "cleared": (gap["low"] > 0 if margin is None else gap["low"] >= margin) if measured else None})
    return rows


def verdict_lines(figures: dict) -> list[str]:
    """The rows of `verdicts` as a table a person reads, then the goals."""
    lines = []
    control = figures.get("control") or {}
    if control.get("steps") is not None:
        same = control.get("same_budget")
        lines.append(f"control: {control['kind']}, trained {control['steps']} steps; the model {control.get('model_steps')}"
                     + ("" if same else "  << NOT THE MODEL'S BUDGET: its comparisons are not fair"))
    lines.append(f"{'figure':40s} {'model':>9s} {'to beat':>9s}  {'cleared':7s}  against")
    for r in verdicts(figures):
        model = f"{r['model']:+9.4f}" if r.get("gap") else f"{r['model']:9.4f}"
        level = f"{r['level']:9.4f}" if r["level"] is not None else f"{'-':>9s}"
        cleared = {True: "yes", False: "NO", None: "-"}[r["cleared"]]
        against = r["against"] or "nothing to compare with"
        if r["low"] is not None:
            against += f"{'; model minus it ' if r.get('interval') else ' '}[{r['low']:+.4f}, {r['high']:+.4f}]"
        if r.get("beside"):
            against += f"; beside {r['beside']}"
        lines.append(f"{r['figure']:40s} {model} {level}  {cleared:7s}  {against}")
    goals = figures.get("goals_met") or {}
    if goals:
        missed = [k for k, met in goals.items() if not met]
        lines.append(f"goals met: {len(goals) - len(missed)} of {len(goals)}" + (f"; not met: {', '.join(missed)}" if missed else ""))
    return lines
