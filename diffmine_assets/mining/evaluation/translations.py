"""How good translations are, on datasets with ground-truth boxes, beside
their control: the same images inverted and regenerated under the same
targets without injection (plain regeneration).

- `translation_target_win`: share of translations more typical of their target
  label than of their source label (chance 0.5: a coin says which);
- `element_swap_rate`: of the translations whose source image holds an element
  of its own label, the share where that element's box is, after translation,
  more typical of the target than of the source (chance 0.5);
- `layout_ssim`: structural similarity (scikit-image) of source and translation
  outside every element box, on luminance standardised per image, so that a
  label-wide change of tint does not count as lost layout; its chance level is
  the same figure between a translation and another source image of the
  same label (two unrelated scenes);
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
from ..translation.tables import translate_label

SSIM_WINDOW = 7


def _luminance(rgb: np.ndarray) -> np.ndarray:
    y = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
    return (y - y.mean()) / (y.std() + 1e-6)


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
    two (R, R, 3) uint8 images."""
    from skimage.metrics import structural_similarity  # imported where used: scikit-image is slow to import

    a, b = _luminance(source), _luminance(translated)
    rng = float(max(a.max(), b.max()) - min(a.min(), b.min())) or 1.0
    _, ssim_map = structural_similarity(a, b, data_range=rng, win_size=SSIM_WINDOW, full=True)
    ssim = float(ssim_map[mask].mean()) if mask.any() else float("nan")
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


def translation_figures(rows: pl.DataFrame, maps: np.ndarray, sources: dict[str, np.ndarray], outputs: list[np.ndarray], boxes: pl.DataFrame | None) -> dict:
    """Figures of a set of translations. `rows`: one per translation (image_id,
    label_key, target_label_key, width, height), in the order of `maps`
    ((P, 2, h, w): under target, under source) and `outputs` (uint8 images at
    model resolution); `sources`: image_id -> the source at model resolution."""
    win = (maps[:, 0].mean(axis=(1, 2)) > maps[:, 1].mean(axis=(1, 2))).astype(float)
    out: dict = {"translation_target_win": round(float(win.mean()), 4) if len(win) else float("nan"), "translations": len(rows),
                 "chance": {"translation_target_win": 0.5}}
    if boxes is None:
        return out
    own = boxes.filter(pl.col("role") == "label")
    swaps, ssims, psnrs, unrelated = [], [], [], []
    ids = list(dict.fromkeys(rows["image_id"].to_list()))
    same_label: dict[str, list[str]] = {}
    for image_id, label_key in zip(rows["image_id"], rows["label_key"]):
        if image_id not in same_label.setdefault(label_key, []):
            same_label[label_key].append(image_id)
    for i, r in enumerate(rows.iter_rows(named=True)):
        side = outputs[i].shape[0]
        mask = background_mask(boxes, r["image_id"], r["width"], r["height"], side)
        ssim, psnr = layout_figures(sources[r["image_id"]], outputs[i], mask)
        ssims.append(ssim)
        psnrs.append(psnr)
        # another source image of the same label (else of any label): what two unrelated scenes score
        others = [j for j in same_label[r["label_key"]] if j != r["image_id"]] or [j for j in ids if j != r["image_id"]]
        if others:
            other = others[i % len(others)]
            unrelated.append(layout_figures(sources[other], outputs[i], mask)[0])
        elements = own.filter(pl.col("image_id") == r["image_id"])
        for b in elements.iter_rows(named=True):
            box = (b["x0"], b["y0"], b["x1"], b["y1"])
            swaps.append(box_mean(maps[i, 0], box, r["width"], r["height"]) > box_mean(maps[i, 1], box, r["width"], r["height"]))
            break  # one element per image: images count once
    out.update({
        "element_swap_rate": round(float(np.mean(swaps)), 4) if swaps else float("nan"),
        "element_swap_translations": len(swaps),
        "layout_ssim": round(float(np.nanmean(ssims)), 4) if ssims else float("nan"),
        "background_psnr_db": round(float(np.mean([p for p in psnrs if np.isfinite(p)])), 2) if psnrs else float("nan"),
    })
    out["chance"].update({"element_swap_rate": 0.5, "layout_ssim": round(float(np.nanmean(unrelated)), 4) if unrelated else None})
    return out


def _pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _figures_of(rows: pl.DataFrame, maps: np.ndarray, boxes: pl.DataFrame | None) -> dict:
    sources = {r["image_id"]: _pixels(r["source_model_path"]) for r in rows.unique("image_id").iter_rows(named=True)}
    return translation_figures(rows, maps, sources, [_pixels(p) for p in rows["path"]], boxes)


def translation_evaluation(translated: pl.DataFrame, typicality: pl.DataFrame, images: pl.DataFrame, boxes: pl.DataFrame | None, checkpoint: dict,
                           spec, files: Callable[..., Path], with_control: bool = True) -> tuple[dict, dict | None]:
    """Figures of the stored translations (every label's `translations`
    rows), and of their control: the same images inverted and regenerated
    under the same targets without injection, written under
    `files("controls", "regenerate", ...)` (`files`: the dataset's files folder)."""
    # each label's map file read once; rows keep their own order, maps follow them
    stored = {path: load_array(path).astype(np.float32) for path in translated["map_path"].unique(maintain_order=True)}
    maps = np.stack([stored[p][i] for p, i in zip(translated["map_path"], translated["map_index"])])
    model_figures = _figures_of(translated, maps, boxes)
    if not with_control:
        return model_figures, None
    checkpoint_id = translated["checkpoint_id"][0]
    model = checkpoint_of_rows(translated, checkpoint, files("checkpoints"))
    tables, control_maps = [], []
    for key in sorted(translated["label_key"].unique().to_list()):
        typ = typicality.filter(pl.col("label_key") == key)
        out_dir = files("controls", "regenerate", checkpoint_id, key)
        t, m = translate_label(model, typ, images, key, spec.translation, spec.typicality, out_dir, checkpoint_id, method="regenerate")
        tables.append(t)
        control_maps.append(m)
    return model_figures, _figures_of(pl.concat(tables), np.concatenate(control_maps), boxes)
