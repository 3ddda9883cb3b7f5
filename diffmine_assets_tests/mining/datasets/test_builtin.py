from collections import Counter

import numpy as np
from PIL import Image

from diffmine_assets.mining.datasets import builtin
from diffmine_assets.mining.config import BuiltinOptions


def test_generation_is_deterministic_to_the_byte(tmp_path):
    opts = BuiltinOptions(images_per_label=6, seed=11)
    builtin.generate(tmp_path / "a", opts)
    builtin.generate(tmp_path / "b", opts)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 6 * len(builtin.LABELS)
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    other = builtin.generate(tmp_path / "c", BuiltinOptions(images_per_label=6, seed=12))
    assert any((tmp_path / "a" / s.relpath).read_bytes() != (tmp_path / "c" / s.relpath).read_bytes() for s in other)


def test_labels_elements_and_shares_are_as_declared():
    opts = BuiltinOptions(images_per_label=40, element_share=0.75, distractor_share=0.5)
    scenes = builtin.layout(opts)
    assert len(builtin.LABELS) >= 4
    kinds_by_label = {label: {k.name for k in own} for label, (_t, own) in builtin.LABELS.items()}
    assert all(len(v) >= 2 for v in kinds_by_label.values())
    assert len(set().union(*kinds_by_label.values())) == 2 * len(builtin.LABELS)  # no element is shared
    assert len({k.shape for k in (*builtin.DISTRACTORS,)} | {k.texture for _t, own in builtin.LABELS.values() for k in own}) >= 3
    for label in builtin.LABELS:
        own = Counter(e.kind.name for s in scenes if s.label == label for e in s.elements if e.role == "label")
        dis = Counter(e.kind.name for s in scenes if s.label == label for e in s.elements if e.role == "distractor")
        # exact shares (placement never fails at these sizes)
        assert own == {k: 30 for k in kinds_by_label[label]}
        assert dis == {k.name: 20 for k in builtin.DISTRACTORS}


def test_boxes_are_inside_and_do_not_overlap():
    opts = BuiltinOptions(images_per_label=30, image_size=64)
    for s in builtin.layout(opts):
        boxes = [e.box for e in s.elements]
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_elements_are_drawn_where_their_boxes_say(tmp_path):
    opts = BuiltinOptions(images_per_label=4, seed=5)
    scenes = builtin.generate(tmp_path, opts)
    s = next(s for s in scenes if any(e.kind.name == "red_disk" for e in s.elements))
    arr = np.asarray(Image.open(tmp_path / s.relpath)).astype(int)
    x0, y0, x1, y1 = next(e.box for e in s.elements if e.kind.name == "red_disk")
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    assert tuple(arr[cy, cx]) == (220, 30, 30)


def test_tint_is_label_wide():
    opts = BuiltinOptions(images_per_label=20)
    means = {}
    for label in builtin.LABELS:
        scenes = [s for s in builtin.layout(opts) if s.label == label]
        means[label] = np.mean([builtin.render(s, opts).resize((1, 1), Image.BOX).getpixel((0, 0)) for s in scenes], axis=0)
    # amber is the warmest, cobalt the bluest on average
    assert means["amber"][0] - means["amber"][2] > means["cobalt"][0] - means["cobalt"][2] + 40
