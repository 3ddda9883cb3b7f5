"""The report: one self-contained HTML page per dataset (pictures embedded),
readable from disk with no server."""

from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..arrays import load_array
from .pictures import ImageCache
from .visuals import as_png, cluster_grid, heatmaps, parallel_grid, patch_strips, translation_grid, translation_masks


@dataclass
class LabelResults:
    """One label's mined tables, as the page shows them."""

    label: str
    key: str
    clusters: pl.DataFrame
    members: pl.DataFrame
    patches: pl.DataFrame
    typicality: pl.DataFrame
    translations: pl.DataFrame | None = None


def label_section(res: LabelResults, images: pl.DataFrame, cache: ImageCache) -> dict:
    """The pictures and figures of one label's section of the page: its
    cluster grid, patch strips, heatmaps and, once it is translated into
    every other label, its translation grid."""
    paths = dict(zip(images["image_id"], images["path"]))
    maps = load_array(res.typicality["map_path"][0]).astype("float32").mean(axis=1)
    translations = None
    tr = res.translations
    labels_all = sorted(images["label_key"].unique().to_list())
    if tr is not None and not tr.is_empty() and set(tr["target_label_key"]) | {res.key} == set(labels_all):
        names = dict(zip(images["label_key"], images["label"]))
        outputs = {(r["image_id"], r["target_label_key"]): r["path"] for r in tr.iter_rows(named=True)}
        translations = as_png(translation_grid(tr.select("image_id", "source_model_path").unique(maintain_order=True).rows(), outputs, labels_all, names, res.key,
                                               translation_masks(tr)))
    return {
        "label": res.label,
        "images": len(res.typicality),
        "patches": int((res.patches["selection"] == "top").sum()),
        "clusters": res.clusters.sort("rank").to_dicts(),
        "grid": as_png(cluster_grid(res.clusters, res.members, paths, cache)),
        "strips": as_png(patch_strips(res.patches, cache)),
        "heatmaps": as_png(heatmaps(res.typicality, maps, cache)),
        "translations": translations,
    }


def parallel_picture(clusters: pl.DataFrame, members: pl.DataFrame, locations: pl.DataFrame, images: pl.DataFrame) -> bytes:
    """The parallel clusters: the same element in every label's version."""
    names = dict(zip(images["label_key"], images["label"]))
    return as_png(parallel_grid(clusters, members, locations, sorted(locations["label_key"].unique().to_list()), names))


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _table(header: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table{f' class={chr(34)}{cls}{chr(34)}' if cls else ''}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


QUALITY_HEADER = ["figure", "what it measures", "model", "must beat", "against", "interval of model − level", "cleared", "goal", "met"]


def flat_parameters(parameters: dict, prefix: str = "") -> list[tuple[str, str]]:
    """A nested parameter record as (dotted name, value) rows."""
    rows = []
    for key, value in parameters.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows += flat_parameters(value, f"{name}.")
        else:
            rows.append((name, ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)))
    return rows


@dataclass
class FigureTable:
    """The figures table's rows (`evaluation.figure_table.quality_rows`), the
    per-label table, the goals not met, and whether a control was scored."""

    rows: list[dict]
    per_label: tuple[list[str], list[list]]
    missed: list[str]
    judged: bool
    controlled: bool


def quality_html(table: FigureTable, dataset: str) -> str:
    """The figures table, goals not met marked, then per-label figures."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in QUALITY_HEADER)
    body, section = [], None
    css = {"NOT MET": "miss", "met": "met", "no": "miss", "yes": "met"}
    for r in table.rows:
        if r["section"] != section:
            section = r["section"]
            body.append(f'<tr class="question"><th colspan="{len(QUALITY_HEADER)}">{html.escape(section)}</th></tr>')
        cells = [r["figure"], r["meaning"], r["model"], r["must_beat"], r["against"], r["interval"], r["cleared"], r["goal"], r["met"]]
        tds = "".join(f'<td class="{css.get(v, "")}">{html.escape(str(v))}</td>' if i in (6, 8) else f"<td>{html.escape(str(v))}</td>" for i, v in enumerate(cells))
        body.append(f"<tr>{tds}</tr>")
    summary = (f'<p class="miss">Goals not met: {html.escape(", ".join(table.missed))}.</p>' if table.missed else "<p>Every goal was met.</p>") if table.judged else ""
    note = ("" if table.controlled else
            f"<p>No control was scored: <code>diffmine eval --dataset {html.escape(dataset)}</code> trains the shuffled-label control "
            "the same way and fills its column.</p>")
    header, rows = table.per_label
    return ("<h2>Quality against the ground truth</h2><p>Each figure beside the level it must beat: the stronger of its chance level (computed "
            "on the same images) and its control (a model trained the same way on shuffled labels; for translations, the source left "
            "untranslated). The interval is the 95 % bootstrap interval over images of the model's figure minus that level, image by image; "
            "a figure clears its level only when the interval lies above zero.</p>" + note + summary
            + f'<table class="quality"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            + ("<h3>Per label</h3>" + _table(header, rows) if rows else ""))


def localisation_html(figures: dict) -> str:
    """The localisation protocol: per label the mean AP of the maps against
    the boxes, beside the control and chance; and along training, when
    `diffmine eval --curve` scored it."""
    by_label = figures.get("localisation_ap_by_label") or {}
    if not by_label:
        return ""
    control = figures.get("control") or {}
    c_by = control.get("localisation_ap_by_label") or {}
    counts = figures.get("localisation_image_counts") or {}
    chance = (figures.get("chance") or {}).get("localisation_ap")
    rows = [[k, counts.get(k, ""), v, c_by.get(k, "")] for k, v in sorted(by_label.items())]
    rows.append(["mean over labels", sum(counts.values()), figures.get("localisation_ap"), control.get("localisation_ap", "")])
    out = (f"<h2>Localisation: typicality maps against the boxes</h2><p>Per label, the mean over its boxed images of the average precision "
           f"of the map against the label's boxes; chance (a map that knows nothing) {chance}.</p>"
           + _table(["label", "boxed images", "model AP", f"{control.get('kind', 'control')} AP"], rows))
    curve = figures.get("localisation_curve")
    if curve:
        runs = [k for k in curve if isinstance(curve[k], list)]
        steps = sorted({r["step"] for k in runs for r in curve[k]})
        table = [[s] + [next((r["localisation_ap"] for r in curve[k] if r["step"] == s), "") for k in runs] for s in steps]
        picture = Path(curve.get("picture", ""))
        out += "<h3>Along training</h3>" + (_img(picture.read_bytes(), "localisation along training") if picture.is_file() else "")
        out += _table(["step"] + [f"{k} AP" for k in runs], table)
    return out


def _made_by(parameters: dict) -> str:
    ckpt = parameters.get("checkpoint") or {}
    if not ckpt:
        return ""
    recipe = ckpt.get("params") if isinstance(ckpt.get("params"), dict) else {}
    training = recipe.get("training", recipe)
    bits = [f"checkpoint <b>{html.escape(str(ckpt.get('checkpoint_id')))}</b>", f"{ckpt.get('steps')} training steps"]
    bits += [f"{k} {html.escape(str(training[k]))}" for k in ("backend", "resolution", "batch_size", "learning_rate", "seed") if k in training]
    stopped = f" Training stopped by {html.escape(str(ckpt['stopped_by']))}." if ckpt.get("stopped_by") else ""
    if ckpt.get("augmentation"):
        stopped += f" Training images augmented with: {html.escape(str(ckpt['augmentation']))}."
    return f"<p>Made from {', '.join(bits)}; every parameter is listed at the end.{stopped}</p>"


def render_report(dataset: str, labels: list[dict], figures: dict | None, parameters: dict, parallel: bytes | None = None,
                  scaling: tuple[bytes, dict] | None = None, table: FigureTable | None = None, training: list[tuple[str, bytes]] | None = None) -> str:
    """`labels`: dicts with label, images, grid/strips/heatmaps (PNG bytes),
    clusters (rows of rank, size, median typicality) and, once translated,
    translations (PNG bytes); `parallel`: the parallel clusters' picture;
    `table`: the figures table (with `figures`; made by evaluation.figure_table);
    `training`: (title, PNG) charts of the checkpoint's training."""
    toc = "".join(f'<li><a href="#label-{i}">{html.escape(lbl["label"])}</a></li>' for i, lbl in enumerate(labels))
    sections = []
    for i, lbl in enumerate(labels):
        parts = [f'<section id="label-{i}"><h2>{html.escape(lbl["label"])}</h2>',
                 f'<p>{lbl["images"]} images, {lbl["patches"]} top patches, {len(lbl["clusters"])} clusters.</p>',
                 "<h3>Typical visual elements: clusters, best first</h3>", _img(lbl["grid"], f"clusters of {lbl['label']}"),
                 _table(["rank", "size", "median typicality", "mean typicality"], [[c["rank"], c["size"], f"{c['median_typicality']:.5f}", f"{c['mean_typicality']:.5f}"] for c in lbl["clusters"][:10]]),
                 "<h3>Most typical, random and least typical patches</h3>", _img(lbl["strips"], f"patch strips of {lbl['label']}"),
                 "<h3>Typicality maps: where knowing the label helps the model denoise (red), on one colour scale</h3>", _img(lbl["heatmaps"], f"heatmaps of {lbl['label']}")]
        if lbl.get("translations"):
            parts += ["<h3>Its most typical images (rows) translated into every label (columns; the yellow column is the source image itself; "
                      "a cyan line marks a translation's edit mask: outside it, the picture is the source's, up to the label-wide tint)</h3>", _img(lbl["translations"], f"translations of {lbl['label']}")]
        parts.append("</section>")
        sections.append("\n".join(parts))
    fig_html = ""
    if figures:
        fig_html = (quality_html(table, dataset) if table else "") + localisation_html(figures)
    parallel_html = ""
    if parallel:
        parallel_html = ("<h2>The same elements across labels (parallel clusters)</h2><p>Locations of the translated images that are typical of "
                         "every label in their translated form (median over labels), clustered on their features in all labels; one row per "
                         "location (its cluster's rank, size and median typicality at the left), one column per label: the same window of each label's version.</p>" + _img(parallel, "parallel clusters"))
    if scaling:
        png, fig = scaling
        keys = ("diffmine_slope", "diffmine_with_training_slope", "baseline_slope", "crossover_images")
        parallel_html += ("<h2>Cost against the number of images (diffmine bench scaling)</h2>" + _img(png, "scaling")
                          + _table(["figure", "value"], [[k, fig.get(k)] for k in keys])
                          + _table(["images", "diffmine s", "+ training s", "correspondence s", "top-1 diffmine", "top-1 correspondence"],
                                   [[r["images"], r["diffmine_s"], r["diffmine_with_training_s"], r["baseline_s"], r["top1_hit_rate"], r["top1_hit_rate_baseline"]]
                                    for r in fig.get("runs", [])]))
    if training:
        parallel_html += ("<h2>How the model trained</h2><p>The denoising loss on training and held-out images, and at the end the held-out "
                          "label gain by timestep: how much knowing the label lowers the loss (above zero: the model uses the label).</p>"
                          + "".join(_img(png, alt) for alt, png in training))
    params_html = "<h2>How these results were made</h2>" + _table(["parameter", "value"], [list(r) for r in flat_parameters(parameters)], "parameters")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>diffmine: {html.escape(dataset)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
img {{ max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; margin: 4px 0; }}
table {{ border-collapse: collapse; margin: 8px 0; }} td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; }}
section {{ border-top: 2px solid #444; margin-top: 2em; }} pre {{ background: #f6f6f6; padding: 8px; overflow-x: auto; }}
tr.question th {{ background: #eef; text-align: left; }} td.miss, p.miss {{ color: #a00; font-weight: bold; }} td.met {{ color: #060; }}
table.parameters td {{ font-family: monospace; font-size: 90%; word-break: break-all; }}
</style></head><body>
<h1>diffmine report: {html.escape(dataset)}</h1>
{_made_by(parameters)}
<p>What is typical of each label: patches whose denoising the label helps most, described by the model's own
features and clustered; clusters ranked by the median typicality of their members. Made {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}.</p>
<ul>{toc}</ul>
{fig_html}
{parallel_html}
{"".join(sections)}
{params_html}
</body></html>
"""
