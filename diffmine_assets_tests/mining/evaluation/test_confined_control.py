"""Regeneration confined to a masked translation's mask: its pixels inside,
the source (tinted or exact) outside, paired with the right rows."""

import numpy as np
import polars as pl
import pytest
from PIL import Image

from diffmine_assets.mining.evaluation.confined import confine, confined_rows


def _images(seed: int):
    rng = np.random.default_rng(seed)
    source = (60 + rng.random((8, 8, 3)) * 130).astype(np.uint8)  # away from 0 and 255: no clipping of the tint
    regen = (60 + rng.random((8, 8, 3)) * 130).astype(np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 3:7] = 255
    return source, regen, mask


def test_inside_the_mask_is_regeneration_and_outside_the_source_shifted_by_one_tint_per_channel():
    source, regen, mask = _images(0)
    out = confine(regen, source, mask, shift_outside=True).astype(np.int16)
    inside = mask > 127
    assert (out[inside] == regen[inside]).all()
    change = out[~inside] - source[~inside].astype(np.int16)
    # one constant per channel (the regeneration's mean change outside), so the pattern outside is the source's
    assert (change.max(axis=0) - change.min(axis=0) <= 1).all()
    expected = (regen[~inside].astype(np.float64) - source[~inside]).mean(axis=0)
    assert np.abs(change.mean(axis=0) - expected).max() < 0.6
    exact = confine(regen, source, mask, shift_outside=False)
    assert (exact[~inside] == source[~inside]).all() and (exact[inside] == regen[inside]).all()


def test_rows_pair_each_translation_with_the_regeneration_of_its_own_image_and_target(tmp_path):
    rows, regen_rows = [], []
    for k, (image_id, target) in enumerate([("i1", "b"), ("i1", "c"), ("i2", "b")]):
        source, regen, mask = _images(k)
        for name, arr in (("s", source), ("r", regen), ("m", mask)):
            Image.fromarray(arr).save(tmp_path / f"{name}{k}.png")
        rows.append({"image_id": image_id, "label_key": "a", "target_label_key": target, "path": f"translation{k}.png",
                     "source_model_path": str(tmp_path / f"s{k}.png"), "mask_path": str(tmp_path / f"m{k}.png")})
        regen_rows.append({"image_id": image_id, "target_label_key": target, "path": str(tmp_path / f"r{k}.png")})
    translated = pl.DataFrame(rows)
    # the control's rows in another order, one of them missing
    out = confined_rows(translated, pl.DataFrame(regen_rows[::-1][:2]), "source", tmp_path / "confined")
    assert out.select("image_id", "target_label_key").rows() == [("i1", "c"), ("i2", "b")]
    for k, path in zip((1, 2), out["path"]):
        source, regen, mask = _images(k)
        assert (np.asarray(Image.open(path)) == confine(regen, source, mask, False)).all()
    # translations without masks (PnP, plain regeneration) have no confined control
    assert confined_rows(translated.with_columns(pl.lit(None, pl.String).alias("mask_path")), pl.DataFrame(regen_rows), "layout", tmp_path) is None
