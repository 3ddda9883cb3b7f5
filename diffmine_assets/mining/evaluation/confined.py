"""A control that tells a masked translation's edit from what its mask keeps:
plain regeneration's own pixels inside the translation's mask, the
translation's own pixels outside it (the source, as the translation kept it,
tint included). The control and the translation differ only inside the mask.

The element swap reads an element through the model, whose view of a cell
takes in its surroundings, so on the built-in data a picture that keeps the
source around its element was read as the target's less often than one
redrawn whole, by both drawers tried (docs/TRANSLATION.md, "Where the last
swaps are lost"). Against plain regeneration a masked translation pays for
its edit and for what its mask keeps; against this control, for its edit
alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from ..images import load_rgb


def confine(regenerated: np.ndarray, translated: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(R, R, 3) uint8: `regenerated` where `mask` ((R, R), white where the
    translation could change) is set, `translated` elsewhere."""
    return np.where((mask > 127)[..., None], regenerated, translated).astype(np.uint8)


def confined_rows(translated: pl.DataFrame, regenerated: pl.DataFrame, out_dir: Path) -> pl.DataFrame | None:
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
        own = np.asarray(load_rgb(r["path"]))
        regen = np.asarray(load_rgb(regen_of[(r["image_id"], r["target_label_key"])]))
        mask = np.asarray(Image.open(r["mask_path"]).convert("L"))
        path = out_dir / f"{r['image_id']}-{r['target_label_key']}.png"
        Image.fromarray(confine(regen, own, mask)).save(path)
        paths.append(str(path))
    return translated.with_columns(pl.Series("path", paths))
