"""How good translations are, beside their controls: plain regeneration
(the same images inverted and regenerated under the same targets without
injection: is the injection worth it?) and the source left untranslated,
scored under the same (target, source) pair (did the label change at all?).
Each figure is also given as a paired difference from each control, with a
95 % bootstrap interval over images (`gaps`); a goal is met only when the
interval clears zero.

- `translation_target_win`: share of translations more typical of their target
  label than of their source label (its chance level: the untranslated
  source's share, computed);
- `element_swap_rate`: of the translations whose source image holds an element
  of its own label, the share where that element's box is, after translation,
  more typical of the target than of the source (chance: the untranslated
  source's share);
- `layout_ssim`: structural similarity (scikit-image) of source and translation
  outside every element box: the SSIM map's mean over the pixels whose whole
  window lies outside the boxes, on luminance standardised by the pixels
  outside the boxes, so that neither a label-wide change of tint nor the
  changed element itself counts as lost layout; its chance level is the same
  figure between a translation and another source image of the same label
  (two unrelated scenes). Until issue 29 the mean took every pixel outside the
  boxes, whose 7-pixel windows reached into the boxes, and standardised by the
  whole image: a translation that changed the boxes and nothing else (the
  boxes as its mask) scored 0.54 on the built-in demo, not 1 (docs/TRANSLATION.md);
- `background_psnr_db`: PSNR outside the boxes, on RGB, for reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
from PIL import Image

from ..arrays import load_array
from ..training.checkpoints import checkpoint_of_rows
from ..tensors import model_space
from ..typicality.score import score_labels
from ..translation.tables import score_translations, translate_label
from .confined import confined_rows
from .intervals import paired_gap

SSIM_WINDOW = 7


def _luminance(rgb: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Luminance standardised by its mean and spread over `where` (the pixels
    outside the boxes), so a changed element does not rescale the rest."""
    y = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
    ref = y[where] if where.any() else y
    return (y - ref.mean()) / (ref.std() + 1e-6)


def window_outside(mask: np.ndarray, window: int = SSIM_WINDOW) -> np.ndarray:
    """The pixels of `mask` whose whole `window` x `window` neighbourhood is
    in `mask` too (the image's border counts as outside the boxes)."""
    from scipy.ndimage import binary_erosion

    return binary_erosion(mask, np.ones((window, window), dtype=bool), border_value=1)


def background_mask(boxes: pl.DataFrame, image_id: str, width: int, height: int, side: int) -> np.ndarray:
    """True outside every element box of the image, at `side` x `side`."""
    mask = np.ones((side, side), dtype=bool)
    for b in boxes.filter(pl.col("image_id") == image_id).iter_rows(named=True):
        x0, x1 = int(np.floor(b["x0"] * side / width)), int(np.ceil(b["x1"] * side / width))
        y0, y1 = int(np.floor(b["y0"] * side / height)), int(np.ceil(b["y1"] * side / height))
        mask[max(0, y0) : y1, max(0, x0) : x1] = False
    return mask


def layout_figures(source: np.ndarray, translated: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(SSIM of standardised luminance, PSNR of RGB) outside the boxes, for
    two (R, R, 3) uint8 images; the SSIM is nan when no window fits
    outside the boxes."""
    from skimage.metrics import structural_similarity  # imported where used: scikit-image is slow to import

    a, b = _luminance(source, mask), _luminance(translated, mask)
    ao, bo = (a[mask], b[mask]) if mask.any() else (a, b)  # the changed element must not widen the range (and soften SSIM)
    rng = float(max(ao.max(), bo.max()) - min(ao.min(), bo.min())) or 1.0
    _, ssim_map = structural_similarity(a, b, data_range=rng, win_size=SSIM_WINDOW, full=True)
    inner = window_outside(mask)
    ssim = float(ssim_map[inner].mean()) if inner.any() else float("nan")
    diff = (source.astype(np.float64) - translated.astype(np.float64))[mask]
    mse = float((diff**2).mean()) if diff.size else float("nan")
    psnr = 10 * np.log10(255.0**2 / mse) if mse > 0 else float("inf")
    return ssim, float(psnr)


def box_mean(tmap: np.ndarray, box: tuple[float, float, float, float], width: int, height: int) -> float:
    """Mean of an (h, w) map over the cells a box (original pixels) covers."""
    h, w = tmap.shape
    x0, y0, x1, y1 = box
    fx0, fy0 = min(w - 1, int(np.floor(x0 * w / width))), min(h - 1, int(np.floor(y0 * h / height)))
    fx1, fy1 = max(fx0 + 1, int(np.ceil(x1 * w / width))), max(fy0 + 1, int(np.ceil(y1 * h / height)))
    return float(tmap[fy0:fy1, fx0:fx1].mean())


def per_translation(rows: pl.DataFrame, maps: np.ndarray, sources: dict[str, np.ndarray], outputs: list[np.ndarray], boxes: pl.DataFrame | None) -> pl.DataFrame:
    """One row per translation (image_id, target_label_key) with what each
    figure counts: `target_win` (1/0), `element_swap` (1/0; null where the
    source holds no element of its label), `layout_ssim` and `background_psnr_db`
    (null without boxes), and `unrelated_ssim`: the layout figure between the
    output and another source image of the same label (else of any label)."""
    win = (maps[:, 0].mean(axis=(1, 2)) > maps[:, 1].mean(axis=(1, 2))).astype(float)
    n = len(rows)
    swaps, ssims, psnrs, unrelated = [None] * n, [None] * n, [None] * n, [None] * n
    if boxes is not None:
        own = boxes.filter(pl.col("role") == "label")
        ids = list(dict.fromkeys(rows["image_id"].to_list()))
        same_label: dict[str, list[str]] = {}
        for image_id, label_key in zip(rows["image_id"], rows["label_key"]):
            if image_id not in same_label.setdefault(label_key, []):
                same_label[label_key].append(image_id)
        for i, r in enumerate(rows.iter_rows(named=True)):
            side = outputs[i].shape[0]
            mask = background_mask(boxes, r["image_id"], r["width"], r["height"], side)
            ssims[i], psnrs[i] = layout_figures(sources[r["image_id"]], outputs[i], mask)
            others = [j for j in same_label[r["label_key"]] if j != r["image_id"]] or [j for j in ids if j != r["image_id"]]
            if others:
                unrelated[i] = layout_figures(sources[others[i % len(others)]], outputs[i], mask)[0]
            element = own.filter(pl.col("image_id") == r["image_id"]).head(1)  # one element per image: images count once
            for b in element.iter_rows(named=True):
                box = (b["x0"], b["y0"], b["x1"], b["y1"])
                swaps[i] = float(box_mean(maps[i, 0], box, r["width"], r["height"]) > box_mean(maps[i, 1], box, r["width"], r["height"]))
    return pl.DataFrame({"image_id": rows["image_id"], "target_label_key": rows["target_label_key"], "target_win": win,
                         "element_swap": swaps, "layout_ssim": ssims, "background_psnr_db": psnrs, "unrelated_ssim": unrelated},
                        schema={"image_id": pl.String, "target_label_key": pl.String, "target_win": pl.Float64, "element_swap": pl.Float64,
                                "layout_ssim": pl.Float64, "background_psnr_db": pl.Float64, "unrelated_ssim": pl.Float64})


def _mean(values: pl.Series, digits: int) -> float:
    values = values.drop_nulls().drop_nans()
    return round(float(values.mean()), digits) if len(values) else float("nan")


def summarise(each: pl.DataFrame, with_boxes: bool) -> dict:
    """The figures of `per_translation`'s rows, with the layout figure's chance level."""
    out: dict = {"translation_target_win": _mean(each["target_win"], 4), "translations": len(each), "chance": {}}
    if not with_boxes:
        return out
    psnr = each["background_psnr_db"].filter(each["background_psnr_db"].is_finite())
    out.update({
        "element_swap_rate": _mean(each["element_swap"], 4),
        "element_swap_translations": int(each["element_swap"].drop_nulls().len()),
        "layout_ssim": _mean(each["layout_ssim"], 4),
        "background_psnr_db": _mean(psnr, 2),
    })
    unrelated = each["unrelated_ssim"].drop_nulls()
    out["chance"]["layout_ssim"] = _mean(unrelated, 4) if len(unrelated) else None
    return out


def translation_figures(rows: pl.DataFrame, maps: np.ndarray, sources: dict[str, np.ndarray], outputs: list[np.ndarray], boxes: pl.DataFrame | None) -> dict:
    """Figures of a set of translations. `rows`: one per translation (image_id,
    label_key, target_label_key, width, height), in the order of `maps`
    ((P, 2, h, w): under target, under source) and `outputs` (uint8 images at
    model resolution); `sources`: image_id -> the source at model resolution."""
    return summarise(per_translation(rows, maps, sources, outputs, boxes), boxes is not None)


def _pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _per_translation_of(rows: pl.DataFrame, maps: np.ndarray, boxes: pl.DataFrame | None, outputs_column: str = "path") -> pl.DataFrame:
    sources = {r["image_id"]: _pixels(r["source_model_path"]) for r in rows.unique("image_id").iter_rows(named=True)}
    return per_translation(rows, maps, sources, [_pixels(p) for p in rows[outputs_column]], boxes)


# what each translation figure is compared with: plain regeneration (is the
# injection worth it?), where nothing changing is the null, the source
# left untranslated (did the label change at all?), and for a masked
# translation, regeneration confined to its mask (is the edit worse, or is it
# what the mask keeps?)
GAPS = {"regeneration": ("target_win", "element_swap", "layout_ssim"), "untranslated": ("target_win", "element_swap"),
        "confined_regeneration": ("target_win", "element_swap")}
FIGURE_OF = {"target_win": "translation_target_win", "element_swap": "element_swap_rate", "layout_ssim": "layout_ssim"}


def translation_gaps(model: pl.DataFrame, controls: dict[str, pl.DataFrame]) -> dict[str, dict]:
    """`<figure>_minus_<control>`: the paired difference per translation
    (same image, same target) with its 95 % bootstrap interval over images."""
    gaps = {}
    for control, columns in GAPS.items():
        if control not in controls:
            continue
        for column in columns:
            gap = paired_gap(model, controls[control], column)
            if gap is not None:
                gaps[f"{FIGURE_OF[column]}_minus_{control}"] = gap
    return gaps


def untranslated_maps(model, translated: pl.DataFrame, typ_opts, pilot: pl.DataFrame) -> np.ndarray:
    """(P, 2, h, w): each translation's source, left untranslated, under
    [its target, its source], as `score_translations` scores a translation.
    Each source is scored once, under its own label and all its targets:
    a source with k targets costs 1 + k conditions, not 3k (the noise set
    is the dataset's, so an (image, label) map does not depend on which
    other labels share its pass)."""
    rows = list(zip(translated["source_path"], translated["label_key"], translated["target_label_key"]))
    labels: dict[str, list[str]] = {}  # source path -> its own label, then its targets
    for path, source, target in rows:
        labels.setdefault(path, [source]).append(target)
    unique = list(labels)
    under = [(labels[p][0], *sorted(labels[p][1:])) for p in unique]  # one group per source label: its images in one pass
    groups = score_labels(model, model_space(model, unique), typ_opts, under=under, pilot=pilot)
    at = {}  # source path -> {label: its map under that label}
    for g in groups:
        maps = g.result.maps.float().numpy()
        for row, i in enumerate(g.index):
            at[unique[i]] = dict(zip(g.labels, maps[row]))
    return np.stack([[at[path][target], at[path][source]] for path, source, target in rows]).astype(np.float32)


def translation_evaluation(translated: pl.DataFrame, typicality: pl.DataFrame, images: pl.DataFrame, boxes: pl.DataFrame | None, checkpoint: dict,
                           spec, files: Callable[..., Path], with_control: bool = True) -> tuple[dict, dict | None]:
    """Figures of the stored translations (every label's `translations`
    rows) with the sources left untranslated, scored under the same target
    and source labels, as their chance level; and, with `with_control`, the
    figures of plain regeneration: the same images inverted and regenerated
    under the same targets without injection (written under
    `files("controls", "regenerate", ...)`; `files`: the dataset's files
    folder) and, for masked translations, that regeneration confined to
    each translation's mask (`confined.py`, under `files("controls",
    "confined", ...)`). The model's figures carry `gaps`: each figure minus
    each control's, paired, with a 95 % interval."""
    # each label's map file read once; rows keep their own order, maps follow them
    stored = {path: load_array(path).astype(np.float32) for path in translated["map_path"].unique(maintain_order=True)}
    maps = np.stack([stored[p][i] for p, i in zip(translated["map_path"], translated["map_index"])])
    model_each = _per_translation_of(translated, maps, boxes)
    model_figures = summarise(model_each, boxes is not None)
    checkpoint_id = translated["checkpoint_id"][0]
    model = checkpoint_of_rows(translated, checkpoint, files("checkpoints"))
    # the source itself under the same (target, source) pair: what a translation that changed nothing scores
    pilot = images.filter(pl.col("label_key").is_in(model.labels))
    unchanged = untranslated_maps(model, translated, spec.typicality, pilot)
    untranslated_each = _per_translation_of(translated, unchanged, boxes, outputs_column="source_model_path")
    untranslated = summarise(untranslated_each, boxes is not None)
    model_figures["chance"]["translation_target_win"] = untranslated["translation_target_win"]
    if boxes is not None:
        model_figures["chance"]["element_swap_rate"] = untranslated["element_swap_rate"]
    controls = {"untranslated": untranslated_each}
    if not with_control:
        model_figures["gaps"] = translation_gaps(model_each, controls)
        return model_figures, None
    tables, control_maps = [], []
    for key in sorted(translated["label_key"].unique().to_list()):
        typ = typicality.filter(pl.col("label_key") == key)
        out_dir = files("controls", "regenerate", checkpoint_id, key)
        t, m = translate_label(model, typ, images, key, spec.translation, spec.typicality, out_dir, checkpoint_id, method="regenerate")
        tables.append(t)
        control_maps.append(m)
    regenerated = pl.concat(tables)
    regeneration_each = _per_translation_of(regenerated, np.concatenate(control_maps), boxes)
    controls["regeneration"] = regeneration_each
    # a masked translation's edit against regeneration's, both confined to the same mask (confined.py says why)
    confined = confined_rows(translated, regenerated, files("controls", "confined", checkpoint_id))
    if confined is not None:
        scored = score_translations(model, model_space(model, confined["path"].to_list()), confined["label_key"].to_list(),
                                    confined["target_label_key"].to_list(), spec.typicality, pilot)
        controls["confined_regeneration"] = _per_translation_of(confined, scored.maps.numpy(), boxes)
    model_figures["gaps"] = translation_gaps(model_each, controls)
    return model_figures, summarise(regeneration_each, boxes is not None)
