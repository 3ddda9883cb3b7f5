"""The translation figures' own chance levels, on hand-made images."""

import numpy as np
import polars as pl

from diffmine_assets.mining.evaluation.translations import translation_figures


def test_the_layout_chance_pairs_a_translation_with_another_image_of_its_label():
    """Two labels whose images share a layout within the label and differ
    across labels: the chance level compares each translation with another
    source image of the same label, so here it is as high as it gets (1.0);
    a pairing across labels (by row) scored about 0."""
    rng = np.random.default_rng(0)
    layout = {"a": (rng.random((16, 16, 3)) * 255).astype(np.uint8), "b": (rng.random((16, 16, 3)) * 255).astype(np.uint8)}
    ids = {"a": ["a1", "a2"], "b": ["b1", "b2"]}
    sources = {i: layout[lbl] for lbl, members in ids.items() for i in members}
    rows = pl.DataFrame([{"image_id": i, "label_key": lbl, "target_label_key": "b" if lbl == "a" else "a", "width": 16, "height": 16}
                         for lbl in ("a", "b") for i in ids[lbl]])
    outputs = [sources[i] for i in rows["image_id"]]  # a translation that changed nothing
    maps = np.zeros((len(rows), 2, 4, 4))
    boxes = pl.DataFrame(schema={"image_id": pl.String, "role": pl.String, "x0": pl.Int32, "y0": pl.Int32, "x1": pl.Int32, "y1": pl.Int32})
    figures = translation_figures(rows, maps, sources, outputs, boxes)
    assert figures["layout_ssim"] == 1.0
    assert figures["chance"]["layout_ssim"] == 1.0
