"""The photo-shapes preset: real photographs, one object whose shape is the label."""

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from diffmine_assets.mining.datasets import builtin, photo_shapes
from diffmine_assets.mining.config import BuiltinOptions, ConfigError, parse_config


def opts(**kw):
    return BuiltinOptions(preset="photo-shapes", **kw)


def test_preset_defaults_and_overrides():
    o = opts()
    assert (o.images_per_label, o.image_size) == (200, 48)
    assert opts(images_per_label=5).images_per_label == 5 and opts(images_per_label=5).image_size == 48
    assert BuiltinOptions().images_per_label == 64  # the planted preset keeps its own defaults
    with pytest.raises(ValueError, match="planted preset only"):
        opts(distractor_share=0.2)
    with pytest.raises(ConfigError, match="preset"):
        parse_config({"datasets": [{"name": "x", "kind": "builtin", "options": {"preset": "photoshapes"}}]})


def test_ten_labels_one_object_each_inside_the_image():
    o = opts(images_per_label=12)
    scenes = builtin.layout(o)
    assert builtin.labels(o) == list(photo_shapes.SHAPES) and len(set(builtin.labels(o))) == 10
    assert Counter(s.label for s in scenes) == {k: 12 for k in photo_shapes.SHAPES}
    records = builtin.boxes(scenes)
    assert len(records) == len(scenes)
    sides = []
    for r in records:
        assert r["role"] == "label" and r["kind"] == r["element_label"] == r["relpath"].split("/")[0]
        assert 0 <= r["x0"] < r["x1"] <= 48 and 0 <= r["y0"] < r["y1"] <= 48
        sides.append(max(r["x1"] - r["x0"], r["y1"] - r["y0"]))
    # about a third of the image side, the same range for every label
    assert 0.2 * 48 <= min(sides) and max(sides) <= 0.45 * 48


def test_generation_is_deterministic_and_draws_the_object_in_its_box(tmp_path):
    o = opts(images_per_label=3, seed=4)
    scenes = builtin.generate(tmp_path / "a", o)
    builtin.generate(tmp_path / "b", o)
    for s in scenes:
        assert (tmp_path / "a" / s.relpath).read_bytes() == (tmp_path / "b" / s.relpath).read_bytes()
    s = next(x for x in scenes if x.label == "square")
    arr = np.asarray(Image.open(tmp_path / "a" / s.relpath)).astype(int)
    x0, y0, x1, y1 = s.box
    centre = arr[(y0 + y1) // 2, (x0 + x1) // 2]
    assert np.abs(centre - np.array(s.colour)).max() <= 2  # the square covers its centre in its colour
    other = builtin.generate(tmp_path / "c", opts(images_per_label=3, seed=5))
    assert any((tmp_path / "a" / x.relpath).read_bytes() != (tmp_path / "c" / x.relpath).read_bytes() for x in other)


def test_backgrounds_are_real_photographs_not_labels():
    o = opts(images_per_label=30)
    scenes = builtin.layout(o)
    # every label draws its backgrounds from the same photographs and its colours from the same distribution
    per_label = {k: {s.photo for s in scenes if s.label == k} for k in photo_shapes.SHAPES}
    assert all(len(v) >= 6 for v in per_label.values())
    hues = {k: np.mean([max(s.colour) - min(s.colour) for s in scenes if s.label == k]) for k in photo_shapes.SHAPES}
    assert max(hues.values()) - min(hues.values()) < 40
    assert all(p.ndim == 3 and min(p.shape[:2]) >= 300 for p in photo_shapes.photos())


def test_shapes_differ_from_each_other():
    masks = {k: photo_shapes.shape_mask(k, 16, 0.0) > 0.5 for k in photo_shapes.SHAPES}
    for a in photo_shapes.SHAPES:
        for b in photo_shapes.SHAPES:
            if a < b:
                iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
                assert iou < 0.85, (a, b, iou)  # the closest pair, disk and square, differs by their corners
