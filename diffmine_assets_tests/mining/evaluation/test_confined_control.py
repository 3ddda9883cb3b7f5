"""Regeneration confined to a masked translation's mask: regeneration's pixels
inside, the translation's own outside, paired with the right rows."""

import numpy as np
import polars as pl
from PIL import Image

from diffmine_assets.mining.evaluation.confined import confine, confined_rows


def _images(seed: int):
    rng = np.random.default_rng(seed)
    translated = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
    regen = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 3:7] = 255
    return translated, regen, mask


def test_the_control_differs_from_its_translation_only_inside_the_mask():
    translated, regen, mask = _images(0)
    out = confine(regen, translated, mask)
    inside = mask > 127
    assert (out[inside] == regen[inside]).all() and (out[~inside] == translated[~inside]).all()
    assert (out[inside] != translated[inside]).any()  # the inputs differ there: the test can fail


def test_rows_pair_each_translation_with_the_regeneration_of_its_own_image_and_target(tmp_path):
    rows, regen_rows = [], []
    for k, (image_id, target) in enumerate([("i1", "b"), ("i1", "c"), ("i2", "b")]):
        translated, regen, mask = _images(k)
        for name, arr in (("t", translated), ("r", regen), ("m", mask)):
            Image.fromarray(arr).save(tmp_path / f"{name}{k}.png")
        rows.append({"image_id": image_id, "label_key": "a", "target_label_key": target, "path": str(tmp_path / f"t{k}.png"),
                     "mask_path": str(tmp_path / f"m{k}.png")})
        regen_rows.append({"image_id": image_id, "target_label_key": target, "path": str(tmp_path / f"r{k}.png")})
    translated = pl.DataFrame(rows)
    # the control's rows in another order, one of them missing: that translation is left out, the others keep their order
    out = confined_rows(translated, pl.DataFrame(regen_rows[::-1][:2]), tmp_path / "confined")
    assert out.select("image_id", "target_label_key").rows() == [("i1", "c"), ("i2", "b")]
    for k, path in zip((1, 2), out["path"]):
        own, regen, mask = _images(k)
        assert (np.asarray(Image.open(path)) == confine(regen, own, mask)).all()
    # translations without masks (PnP, plain regeneration) have no confined control
    assert confined_rows(translated.with_columns(pl.lit(None, pl.String).alias("mask_path")), pl.DataFrame(regen_rows), tmp_path) is None
