"""The pictures of the results: a label's cluster grid, patch strips and
heatmaps; translations and parallel clusters across labels; curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image, ImageDraw

from .pictures import ImageCache, contact_sheet, evidence_chart, heatmap_grid, line_chart, patch_strip_rows, png_bytes

STRIP = 12
HEATMAPS = 8
GRID_MEMBERS = 10
GRID_ROWS = 32


def cluster_grid(clusters: pl.DataFrame, members: pl.DataFrame, paths: dict[str, str], cache: ImageCache | None = None):
    """One row per cluster, best first; members nearest-to-centre first."""
    groups = []
    for c in clusters.sort("rank").head(GRID_ROWS).iter_rows(named=True):
        m = members.filter(pl.col("cluster") == c["cluster"]).sort("rank_in_cluster").head(GRID_MEMBERS)
        items = [(paths[r["image_id"]], (r["x0"], r["y0"], r["x1"], r["y1"])) for r in m.iter_rows(named=True)]
        groups.append((f"#{c['rank']}  n={c['size']}\nmedian {c['median_typicality']:.4f}", items))
    return contact_sheet(patch_strip_rows(groups, cache), thumb=48, caption_width=130)


def patch_strips(patches: pl.DataFrame, cache: ImageCache | None = None):
    """Most typical, random and least typical patches of a label, a row each."""
    groups = []
    for selection, caption in (("top", "most typical"), ("random", "random"), ("bottom", "least typical")):
        rows = patches.filter(pl.col("selection") == selection).sort("rank_in_label").head(STRIP)
        groups.append((caption, [(r["path"], (r["x0"], r["y0"], r["x1"], r["y1"])) for r in rows.iter_rows(named=True)]))
    return contact_sheet(patch_strip_rows(groups, cache), thumb=48, caption_width=110)


def heatmaps(typicality: pl.DataFrame, mean_maps: np.ndarray, cache: ImageCache | None = None):
    """The label's most and least typical images with their maps over them,
    on one colour scale with its bar; each captioned with its rank and its
    typicality (the map's mean)."""
    cache = cache or ImageCache()
    ordered = typicality.sort("typicality", descending=True).with_row_index("rank", offset=1)
    picks = ordered.head(HEATMAPS // 2).vstack(ordered.tail(HEATMAPS // 2)) if len(ordered) > HEATMAPS else ordered
    images, maps, captions = [], [], []
    for r in picks.iter_rows(named=True):
        images.append(cache.get(r["path"]))
        maps.append(mean_maps[r["map_index"]])
        captions.append(f"#{r['rank']} of {len(ordered)}: typicality {r['typicality']:+.4f}")
    return heatmap_grid(images, maps, captions, "most typical (top row) and least typical images of the label, their maps over them")


def as_png(img) -> bytes:
    return png_bytes(img)


def _crop(path: str, box: tuple[int, int, int, int], width: int, height: int, cache: dict) -> Image.Image:
    if path not in cache:
        img = Image.open(path)
        img.load()
        cache[path] = img.convert("RGB")
    img = cache[path]
    sx, sy = img.width / width, img.height / height
    x0, y0, x1, y1 = box
    return img.crop((int(round(x0 * sx)), int(round(y0 * sy)), max(int(round(x0 * sx)) + 1, int(round(x1 * sx))), max(int(round(y0 * sy)) + 1, int(round(y1 * sy)))))


def parallel_grid(clusters: pl.DataFrame, members: pl.DataFrame, locations: pl.DataFrame, labels: list[str], label_names: dict[str, str],
                  per_cluster: int = 2, max_clusters: int = 16) -> Image.Image:
    """One row per (cluster, member), best cluster first; one column per label:
    the same location in each label's version."""
    cache: dict = {}
    rows = [("version under:", [_caption_tile(label_names.get(k, k)) for k in labels])]
    for c in clusters.sort("rank").head(max_clusters).iter_rows(named=True):
        picks = members.filter(pl.col("cluster") == c["cluster"]).sort("rank_in_cluster").head(per_cluster)
        for m in picks.iter_rows(named=True):
            loc = locations.filter(pl.col("location") == m["location"])
            by_label = {r["label_key"]: r for r in loc.iter_rows(named=True)}
            crops = [_crop(by_label[k]["version_path"], (m["x0"], m["y0"], m["x1"], m["y1"]), by_label[k]["width"], by_label[k]["height"], cache) for k in labels]
            rows.append((f"#{c['rank']} n={c['size']}\nmedian {c['median_typicality']:.4f}", crops))
    return contact_sheet(rows, thumb=48, caption_width=130)


def _caption_tile(text: str, note: str = "") -> Image.Image:
    """A column's heading: the label (its first 8 characters; the full names are
    in the report's tables), and under it a note on a yellow ground (the source column)."""
    tile = Image.new("RGB", (48, 48), (255, 240, 150) if note else (255, 255, 255))
    draw = ImageDraw.Draw(tile)
    draw.text((2, 12), text[:8], fill=(0, 0, 0))
    if note:
        draw.text((2, 28), note[:8], fill=(120, 0, 0))
    return tile


MASK_OUTLINE = (0, 255, 255)


def outlined(img: Image.Image, mask_path: str, thumb: int) -> Image.Image:
    """`img` at `thumb` px with its edit mask's border drawn in cyan: what
    lies outside the line is the source's."""
    img = img.convert("RGB").resize((thumb, thumb), Image.NEAREST)
    mask = np.asarray(Image.open(mask_path).convert("L").resize((thumb, thumb), Image.NEAREST)) > 127
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    pixels = np.asarray(img).copy()
    pixels[mask & ~inner] = MASK_OUTLINE
    return Image.fromarray(pixels)


def translation_grid(sources: list[tuple[str, str]], outputs: dict[tuple[str, str], str], labels: list[str], label_names: dict[str, str], source_key: str,
                     masks: dict[tuple[str, str], str | None] | None = None) -> Image.Image:
    """Rows: the source images; columns: every label (the source label's
    column holds the image itself). With `masks`, each translation shows its
    edit mask's border."""
    thumb = 64
    rows = [("into label:", [_caption_tile(label_names.get(k, k), "source" if k == source_key else "") for k in labels])]
    for image_id, path in sources:
        ims = []
        for k in labels:
            p = path if k == source_key else outputs[(image_id, k)]
            img = Image.open(p)
            img.load()
            mask = None if k == source_key or masks is None else masks.get((image_id, k))
            ims.append(outlined(img, mask, thumb) if mask else img.convert("RGB"))
        rows.append((image_id[:12], ims))
    return contact_sheet(rows, thumb=thumb, caption_width=110)


def translation_masks(table: pl.DataFrame) -> dict[tuple[str, str], str | None] | None:
    """(image_id, target) -> edit mask path, from a translations table; None
    when its method keeps no mask (or the table predates masks)."""
    if "mask_path" not in table.columns or table["mask_path"].is_null().all():
        return None
    return {(r["image_id"], r["target_label_key"]): r["mask_path"] for r in table.iter_rows(named=True)}


def curve_picture(curves: dict[str, list[dict]], chance: float, path: Path, title: str) -> Path:
    """Localisation AP against training step, one line per run (model,
    control) and the chance level as a flat line."""
    series = {name: [(r["step"], r["localisation_ap"]) for r in rows] for name, rows in curves.items() if rows}
    steps = [r["step"] for rows in curves.values() for r in rows]
    if steps and chance == chance:
        series["chance"] = [(min(steps), chance), (max(steps), chance)]
    path.parent.mkdir(parents=True, exist_ok=True)
    line_chart(series, title, xlabel="training step", ylabel="localisation AP").save(path)
    return path


def loss_chart(log: pl.DataFrame, title: str) -> Image.Image:
    """The training curve: train and held-out denoising loss by step."""
    return line_chart({"train loss": list(zip(log["step"], log["loss"])), "held-out loss": list(zip(log["step"], log["val_loss"]))}, title,
                      xlabel="training step", ylabel="denoising loss (MSE)")


def training_evidence_chart(checks: list[dict], best_step: int | None, labels: int, title: str) -> Image.Image | None:
    """The checks of an evidence-length training (stopping.checks_from:
    step, accuracy, gain): accuracy and label gain over steps, the published
    step marked; None when the run made fewer than two checks."""
    if len(checks) < 2:
        return None
    return evidence_chart(checks, best_step, 1 / max(labels, 1), title)


def label_gain_chart(bands: list[dict], title: str) -> Image.Image:
    """The held-out label gain, L(null) - L(own label), by timestep band, and zero."""
    return line_chart({"gain": [((b["t_lo"] + b["t_hi"]) / 2, b["gain"]) for b in bands], "zero": [(0, 0.0), (1000, 0.0)]}, title,
                      xlabel="timestep (of 1000)", ylabel="L(null) - L(own label)")
