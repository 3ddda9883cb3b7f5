"""A control that tells a masked translation's edit from what its mask keeps:
plain regeneration's own pixels inside the translation's mask, the source
outside it (shifted per channel by regeneration's mean change there when the
translation's `keep_outside` is `layout`, as the translation shifts it).

The element swap reads an element through the model, whose view of a cell
takes in its surroundings, so a picture that keeps the source around its
element is read as the target's less often than one redrawn whole, whoever
draws the element (docs/TRANSLATION.md, "Where the last swaps are lost":
regeneration confined to the mask swapped 0.932 over six seeds, the masked
translation 0.941, regeneration itself 0.979). Against regeneration a masked
translation pays for both; against this control only for its edit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image


def confine(regenerated: np.ndarray, source: np.ndarray, mask: np.ndarray, shift_outside: bool) -> np.ndarray:
    """(R, R, 3) uint8: `regenerated` where `mask` ((R, R), white where the
    translation could change) is set, `source` elsewhere, plus, with
    `shift_outside`, regeneration's mean change per channel outside the mask."""
    inside = mask > 127
    src, reg = source.astype(np.float32), regenerated.astype(np.float32)
    shift = (reg - src)[~inside].mean(axis=0) if shift_outside and (~inside).any() else np.zeros(3, np.float32)
    out = np.where(inside[..., None], reg, src + shift)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def confined_rows(translated: pl.DataFrame, regenerated: pl.DataFrame, keep_outside: str, out_dir: Path) -> pl.DataFrame | None:
    """The translated rows with `path` pointing at their confined
    regeneration (written under `out_dir`), in the same order; None when the
    translations have no masks (PnP, plain regeneration) or no regeneration."""
    if "mask_path" not in translated.columns or translated["mask_path"].null_count() or not len(translated):
        return None
    regen_of = {(i, t): p for i, t, p in regenerated.select("image_id", "target_label_key", "path").iter_rows()}
    # a translation whose pair was not regenerated (options changed since) has no control: it is left out of the pairing
    translated = translated.filter(pl.Series([(i, t) in regen_of for i, t in translated.select("image_id", "target_label_key").iter_rows()], dtype=pl.Boolean))
    if not len(translated):
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in translated.iter_rows(named=True):
        source = np.asarray(Image.open(r["source_model_path"]).convert("RGB"))
        regen = np.asarray(Image.open(regen_of[(r["image_id"], r["target_label_key"])]).convert("RGB"))
        mask = np.asarray(Image.open(r["mask_path"]).convert("L"))
        path = out_dir / f"{r['image_id']}-{r['target_label_key']}.png"
        Image.fromarray(confine(regen, source, mask, keep_outside == "layout")).save(path)
        paths.append(str(path))
    return translated.with_columns(pl.Series("path", paths))
