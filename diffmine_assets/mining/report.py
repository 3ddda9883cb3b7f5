"""The report: one self-contained HTML page per dataset (pictures embedded),
readable from disk with no server."""

from __future__ import annotations

import base64
import html
import json
import time


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_report(dataset: str, labels: list[dict], figures: dict | None, parameters: dict, parallel: bytes | None = None,
                  scaling: tuple[bytes, dict] | None = None) -> str:
    """`labels`: dicts with label, images, grid/strips/heatmaps (PNG bytes),
    clusters (rows of rank, size, median typicality) and, once translated,
    translations (PNG bytes); `parallel`: the parallel clusters' picture."""
    toc = "".join(f'<li><a href="#label-{i}">{html.escape(lbl["label"])}</a></li>' for i, lbl in enumerate(labels))
    sections = []
    for i, lbl in enumerate(labels):
        parts = [f'<section id="label-{i}"><h2>{html.escape(lbl["label"])}</h2>',
                 f'<p>{lbl["images"]} images, {lbl["patches"]} top patches, {len(lbl["clusters"])} clusters.</p>',
                 "<h3>Typical visual elements: clusters, best first</h3>", _img(lbl["grid"], f"clusters of {lbl['label']}"),
                 _table(["rank", "size", "median typicality", "mean typicality"], [[c["rank"], c["size"], f"{c['median_typicality']:.5f}", f"{c['mean_typicality']:.5f}"] for c in lbl["clusters"][:10]]),
                 "<h3>Most typical, random and least typical patches</h3>", _img(lbl["strips"], f"patch strips of {lbl['label']}"),
                 "<h3>Typicality maps (red: the label helps denoise)</h3>", _img(lbl["heatmaps"], f"heatmaps of {lbl['label']}")]
        if lbl.get("translations"):
            parts += ["<h3>Its most typical images translated into every label (columns)</h3>", _img(lbl["translations"], f"translations of {lbl['label']}")]
        parts.append("</section>")
        sections.append("\n".join(parts))
    fig_html = ""
    if figures:
        rows = [[k, json.dumps(v) if isinstance(v, (dict, list)) else v] for k, v in figures.items()]
        fig_html = "<h2>Quality against the ground truth</h2>" + _table(["figure", "value"], rows)
    parallel_html = ""
    if parallel:
        parallel_html = ("<h2>The same elements across labels (parallel clusters)</h2><p>Locations of the translated images that are typical of "
                         "every label in their translated form (median over labels), clustered on their features in all labels; one row per "
                         "location, one column per label.</p>" + _img(parallel, "parallel clusters"))
    if scaling:
        png, fig = scaling
        keys = ("diffmine_slope", "diffmine_with_training_slope", "baseline_slope", "crossover_images")
        parallel_html += ("<h2>Cost against the number of images (diffmine bench scaling)</h2>" + _img(png, "scaling")
                          + _table(["figure", "value"], [[k, fig.get(k)] for k in keys])
                          + _table(["images", "diffmine s", "+ training s", "correspondence s", "top-1 diffmine", "top-1 correspondence"],
                                   [[r["images"], r["diffmine_s"], r["diffmine_with_training_s"], r["baseline_s"], r["top1_hit_rate"], r["top1_hit_rate_baseline"]]
                                    for r in fig.get("runs", [])]))
    params_html = "<h2>How these results were made</h2><pre>" + html.escape(json.dumps(parameters, indent=2, sort_keys=True, default=str)) + "</pre>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>diffmine: {html.escape(dataset)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
img {{ max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; margin: 4px 0; }}
table {{ border-collapse: collapse; margin: 8px 0; }} td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; }}
section {{ border-top: 2px solid #444; margin-top: 2em; }} pre {{ background: #f6f6f6; padding: 8px; overflow-x: auto; }}
</style></head><body>
<h1>diffmine report: {html.escape(dataset)}</h1>
<p>What is typical of each label: patches whose denoising the label helps most, described by the model's own
features and clustered; clusters ranked by the median typicality of their members. Made {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}.</p>
<ul>{toc}</ul>
{fig_html}
{parallel_html}
{"".join(sections)}
{params_html}
</body></html>
"""
