"""A label's translations as a table (each output scored under its target
and its source label), the translated sets that parallel mining reads back
from the lake, and one image translated on request (`diffmine translate`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from PIL import Image

from ..config.options import TranslationOptions, TypicalityOptions
from ..denoisers.base import Denoiser
from ..tensors import model_space
from ..typicality.score import score_labels
from .inversion import to_uint8, translate
from .parallel import TranslatedSet


TRANSLATION_SCHEMA = {
    "image_id": pl.String, "source_path": pl.String, "source_model_path": pl.String, "width": pl.Int64, "height": pl.Int64,
    "target_label": pl.String, "target_label_key": pl.String, "path": pl.String, "dataset": pl.String, "label": pl.String, "label_key": pl.String,
    "typicality_target": pl.Float64, "typicality_source": pl.Float64, "map_index": pl.Int32, "method": pl.String, "checkpoint_id": pl.String,
    "params": pl.String, "seconds": pl.Float64, "mask_path": pl.String, "mask_share": pl.Float64, "target_win": pl.Boolean,
}


def save_mask(mask: torch.Tensor, side: int, path: Path) -> Path:
    """An (h, w) edit mask as a black-and-white PNG at the output's side
    (white: where the translation was let change)."""
    img = Image.fromarray((mask.float().numpy() * 255).round().astype(np.uint8), mode="L")
    img.resize((side, side), Image.NEAREST).save(path)
    return path


@dataclass
class TranslationScores:
    """Typicality of translated images under their target and their source
    label (against the null condition, the same estimator as the maps)."""

    maps: torch.Tensor  # (P, 2, h, w) mean maps: [under target, under source]
    scores: torch.Tensor  # (P, 2) image means


def score_translations(model: Denoiser, outputs: torch.Tensor, source_keys: list[str], target_keys: list[str], typ_opts: TypicalityOptions,
                       pilot: pl.DataFrame | None = None) -> TranslationScores:
    """Maps of each translation (model space) under its target and its
    source label; `pilot`: the dataset's images, so the noise set is the
    dataset's (default: the outputs' own pilot)."""
    groups = score_labels(model, outputs, typ_opts, under=list(zip(target_keys, source_keys)), pilot=pilot)
    maps = torch.zeros((len(outputs), 2, *outputs.shape[-2:]), dtype=torch.float32)
    for g in groups:
        maps[torch.from_numpy(g.index)] = g.result.maps.float()
    return TranslationScores(maps, maps.mean(dim=(-2, -1)))


def most_typical(typicality: pl.DataFrame, n: int) -> pl.DataFrame:
    """The label's `n` most typical images (ties by image id, so the choice
    is stable)."""
    return typicality.sort(["typicality", "image_id"], descending=[True, False]).head(n)


def translate_label(model: Denoiser, typicality: pl.DataFrame, images: pl.DataFrame, label_key: str, opts: TranslationOptions,
                    typ_opts: TypicalityOptions, out_dir: Path, checkpoint_id: str, method: str | None = None, progress=None) -> tuple[pl.DataFrame, np.ndarray]:
    """The label's most typical images translated into every other label of
    the model: PNGs (model resolution) under `out_dir`, one row per (image,
    target) with the typicality of the output under target and source, and
    the (P, 2, h, w) maps [under target, under source] behind them."""
    method = method or opts.method
    targets = [k for k in model.labels if k != label_key]
    chosen = most_typical(typicality, opts.images_for(len(model.labels))).select("image_id")
    rows = images.join(chosen, on="image_id").sort("image_id")
    if not targets:  # a one-label model: nothing to translate into
        return pl.DataFrame(schema=TRANSLATION_SCHEMA), np.zeros((0, 2, model.resolution, model.resolution), dtype=np.float32)
    x0 = model_space(model, rows["path"].to_list())
    outs, result = translate(model, x0, [label_key] * len(rows), [targets] * len(rows), opts, method=method, progress=progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    records, flat = [], []
    names = dict(zip(images["label_key"], images["label"]))
    masks = iter(result.masks) if result.masks is not None else None
    for i, r in enumerate(rows.iter_rows(named=True)):
        source_png = out_dir / f"{r['image_id']}-{label_key}.png"
        Image.fromarray(to_uint8(model.decode(x0[i : i + 1])[0])).save(source_png)
        for j, tgt in enumerate(targets):
            png = out_dir / f"{r['image_id']}-{tgt}.png"
            pixels = to_uint8(model.decode(outs[i][j][None])[0])
            Image.fromarray(pixels).save(png)
            flat.append(outs[i][j])
            mask = next(masks) if masks is not None else None
            records.append({"image_id": r["image_id"], "source_path": r["path"], "source_model_path": str(source_png), "width": r["width"], "height": r["height"],
                            "target_label": names.get(tgt, tgt), "target_label_key": tgt, "path": str(png),
                            "mask_path": None if mask is None else str(save_mask(mask, pixels.shape[0], out_dir / f"{r['image_id']}-{tgt}-mask.png")),
                            "mask_share": None if mask is None else round(float(mask.float().mean()), 4)})
    stacked = torch.stack(flat)
    pilot = images.filter(pl.col("label_key").is_in(model.labels))
    scores = score_translations(model, stacked, [label_key] * len(flat), [rec["target_label_key"] for rec in records], typ_opts, pilot)
    params = json.dumps({**opts.result_options(), "method": method, "typicality": typ_opts.result_options()}, sort_keys=True)
    table = pl.DataFrame(records, schema_overrides={"mask_path": pl.String, "mask_share": pl.Float64}).with_columns(
        pl.lit(rows["dataset"][0]).alias("dataset"),
        pl.lit(names.get(label_key, label_key)).alias("label"),
        pl.lit(label_key).alias("label_key"),
        pl.Series("typicality_target", scores.scores[:, 0].numpy().astype(np.float64)),
        pl.Series("typicality_source", scores.scores[:, 1].numpy().astype(np.float64)),
        pl.Series("map_index", np.arange(len(records)), dtype=pl.Int32),
        pl.lit(method).alias("method"),
        pl.lit(checkpoint_id).alias("checkpoint_id"),
        pl.lit(params).alias("params"),
        pl.lit(round(result.seconds, 2)).alias("seconds"),
    ).with_columns((pl.col("typicality_target") > pl.col("typicality_source")).alias("target_win"))
    return table, scores.maps.numpy()


def translated_sets(translations: pl.DataFrame, typicality: pl.DataFrame, load_maps) -> list[TranslatedSet]:
    """Every source image with its versions under every label: translations
    (their map under the target) and the image itself (its own-label map,
    from image_typicality). `load_maps(path)` reads a stored array."""
    sets = []
    own_maps: dict[str, np.ndarray] = {}
    trans_maps: dict[str, np.ndarray] = {}
    typ = {r["image_id"]: r for r in typicality.iter_rows(named=True)}
    for (image_id,), group in translations.group_by(["image_id"], maintain_order=True):
        first = group.row(0, named=True)
        t = typ.get(image_id)
        if t is None:
            raise ValueError(f"translated image {image_id} has no row in image_typicality")
        if t["map_path"] not in own_maps:
            own_maps[t["map_path"]] = load_maps(t["map_path"])
        paths = {first["label_key"]: first["source_model_path"]}
        maps = {first["label_key"]: own_maps[t["map_path"]][t["map_index"]].astype(np.float32).mean(axis=0)}
        for r in group.iter_rows(named=True):
            if r["map_path"] not in trans_maps:
                trans_maps[r["map_path"]] = load_maps(r["map_path"])
            paths[r["target_label_key"]] = r["path"]
            maps[r["target_label_key"]] = trans_maps[r["map_path"]][r["map_index"], 0].astype(np.float32)
        sets.append(TranslatedSet(image_id, first["label_key"], int(first["width"]), int(first["height"]), paths, maps))
    return sets


def find_image(images: pl.DataFrame, which: str) -> dict:
    """The images-table row of `which`: a relpath (as listed), an image id,
    or a file path."""
    for column in ("relpath", "image_id", "path"):
        hit = images.filter(pl.col(column) == which)
        if len(hit):
            return hit.row(0, named=True)
    resolved = str(Path(which).resolve())
    hit = images.filter(pl.col("path") == resolved)
    if len(hit):
        return hit.row(0, named=True)
    examples = images["relpath"].head(3).to_list()
    raise ValueError(f"no image {which!r} in the dataset (give its relpath as in the images table, e.g. {examples}, or its image_id)")


def translate_one(model: Denoiser, row: dict, target_key: str, opts: TranslationOptions, typ_opts: TypicalityOptions, out: Path, method: str | None = None) -> dict:
    """One image into one label, saved as a PNG at model resolution, with
    its typicality under target and source."""
    x0 = model_space(model, [row["path"]])
    outs, result = translate(model, x0, [row["label_key"]], [[target_key]], opts, method=method)
    img = outs[0][0]
    out.parent.mkdir(parents=True, exist_ok=True)
    pixels = to_uint8(model.decode(img[None])[0])
    Image.fromarray(pixels).save(out)
    mask = {}
    if result.masks is not None:
        mask_png = save_mask(result.masks[0], pixels.shape[0], out.with_name(out.stem + "-mask.png"))
        mask = {"mask": str(mask_png), "mask_share": round(float(result.masks[0].mean()), 4)}
    scores = score_translations(model, img[None], [row["label_key"]], [target_key], typ_opts)
    return {"image": row["relpath"], "image_id": row["image_id"], "source_label_key": row["label_key"], "target_label_key": target_key,
            "method": method or opts.method, "out": str(out), "typicality_target": round(float(scores.scores[0, 0]), 6),
            "typicality_source": round(float(scores.scores[0, 1]), 6), **mask, "seconds": round(result.seconds, 2), "evaluations": result.evaluations,
            "options": opts.result_options()}
