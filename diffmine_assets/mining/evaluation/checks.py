"""Checks of stored results that can fail: each returns whether it passed
and what it found. The asset checks of the graph (assets/checks.py) run them
on every materialization; they hold no Dagster."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl


@dataclass
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


def maps_finite(maps: np.ndarray) -> CheckOutcome:
    """Every value of the typicality maps is a number (no NaN or inf from a
    diverged model or an overflow in half precision)."""
    bad = int(np.size(maps) - np.isfinite(maps).sum())
    return CheckOutcome(bad == 0, "all map values are finite" if bad == 0 else f"{bad} of {np.size(maps)} map values are NaN or infinite",
                        {"non_finite_values": bad, "values": int(np.size(maps))})


def top_patches_do_not_overlap(patches: pl.DataFrame) -> CheckOutcome:
    """The top windows of one image never overlap (the best non-overlapping
    windows per image is what patch_typicality promises)."""
    overlaps = 0
    top = patches.filter(pl.col("selection") == "top")
    for _, g in top.group_by("image_id"):
        boxes = g.select("x0", "y0", "x1", "y1").to_numpy()
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    overlaps += 1
    return CheckOutcome(overlaps == 0, "no two top windows of an image overlap" if overlaps == 0 else f"{overlaps} pairs of top windows overlap",
                        {"overlapping_pairs": overlaps, "top_windows": len(top)})


def label_has_patches(patches: pl.DataFrame) -> CheckOutcome:
    n = int((patches["selection"] == "top").sum()) if len(patches) else 0
    return CheckOutcome(n > 0, f"{n} top patches" if n else "the label has no top patch (images smaller than the window?)", {"top_patches": n})


def members_belong_to_label(members: pl.DataFrame, images: pl.DataFrame, label_key: str) -> CheckOutcome:
    """Every clustered patch is of this label, and its image is one of the
    label's images."""
    own = set(images.filter(pl.col("label_key") == label_key)["image_id"].to_list())
    wrong_label = int((members["label_key"] != label_key).sum()) if len(members) else 0
    foreign = int((~members["image_id"].is_in(list(own))).sum()) if len(members) else 0
    ok = wrong_label == 0 and foreign == 0 and len(members) > 0
    text = "every member is a patch of one of the label's images" if ok else (
        f"{wrong_label} members carry another label, {foreign} come from images of other labels" if len(members) else "no members")
    return CheckOutcome(ok, text, {"members": len(members), "other_label": wrong_label, "foreign_images": foreign})


def goals_met(figures: dict, goals: dict) -> CheckOutcome:
    """The quality goals of a dataset with ground truth (name -> met)."""
    missed = sorted(k for k, v in goals.items() if not v)
    metadata = {k: figures[k] for k in goals if k in figures and isinstance(figures[k], (int, float))}
    # a translation goal is a paired difference: its value and interval
    metadata.update({k: f"{g['difference']:+.4f} [{g['low']:+.4f}, {g['high']:+.4f}]" for k, g in (figures.get("gaps") or {}).items() if k in goals})
    return CheckOutcome(not missed, "every quality goal met" if not missed else f"goals not met: {', '.join(missed)}",
                        {**metadata, "missed": ", ".join(missed) or "none"})
