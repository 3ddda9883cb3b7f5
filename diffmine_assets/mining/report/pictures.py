"""Pictures people look at: contact sheets of images and crops, with captions."""

from __future__ import annotations

import io

import numpy as np
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..images import load_rgb

_FONT = ImageFont.load_default()


def contact_sheet(rows: list[tuple[str, list[Image.Image]]], thumb: int = 64, caption_width: int = 120, pad: int = 2) -> Image.Image:
    """One row per (caption, images), thumbnails scaled to `thumb` pixels."""
    cols = max((len(ims) for _, ims in rows), default=1) or 1
    width = caption_width + cols * (thumb + pad) + pad
    height = max(1, len(rows)) * (thumb + pad) + pad
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (caption, ims) in enumerate(rows):
        y = pad + r * (thumb + pad)
        for line_no, line in enumerate(caption.split("\n")[:4]):
            draw.text((4, y + 4 + 12 * line_no), line[:20], fill=(0, 0, 0), font=_FONT)
        for c, im in enumerate(ims):
            scale = thumb / max(im.size)
            size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
            resample = Image.NEAREST if scale >= 2 else Image.LANCZOS
            sheet.paste(im.resize(size, resample), (caption_width + pad + c * (thumb + pad), y))
    return sheet


def image_rows(groups: list[tuple[str, list[str | Path]]]) -> list[tuple[str, list[Image.Image]]]:
    return [(caption, [load_rgb(p) for p in paths]) for caption, paths in groups]


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _pyplot():
    """matplotlib's pyplot on its file-only backend (no display, no network), imported where drawn: it takes about a second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure_image(fig) -> Image.Image:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    buf.seek(0)
    img = Image.open(buf)
    img.load()
    return img.convert("RGB")


def line_chart(series: dict[str, list[tuple[float, float]]], title: str, size=(480, 260), xlabel: str = "", ylabel: str = "") -> Image.Image:
    """A line chart (x, y points per named series) drawn by matplotlib, with
    axes, ticks and a legend; a series named "chance" or "zero" is drawn as
    a dashed reference line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(size[0] / 100, size[1] / 100))
    for name, points in series.items():
        points = [p for p in points if p[1] == p[1]]
        if not points:
            continue
        xs, ys = zip(*points)
        reference = name in ("chance", "zero")
        ax.plot(xs, ys, linestyle="--" if reference else "-", color="grey" if reference else None, marker=None if reference or len(xs) > 12 else "o",
                markersize=3, linewidth=1 if reference else 1.6, label=name)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, frameon=False)
    return _figure_image(fig)


def evidence_chart(checks: list[dict], best_step: int | None, chance: float, title: str, size=(520, 270)) -> Image.Image:
    """The evidence of training: quick held-out accuracy (left axis, with
    chance dashed) and held-out label gain (right axis) at each check, the
    published step marked by a vertical line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(size[0] / 100, size[1] / 100))
    steps = [c["step"] for c in checks]
    acc = [c["accuracy"] for c in checks]
    ax.plot(steps, acc, marker="o", markersize=3, color="tab:blue", label="quick held-out accuracy")
    ax.axhline(chance, linestyle="--", color="grey", linewidth=1, label="chance")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("training step", fontsize=8)
    ax.set_ylabel("held-out accuracy", fontsize=8)
    right = ax.twinx()
    right.plot(steps, [c["gain"] * 1e3 for c in checks], marker="s", markersize=3, color="tab:orange", label="label gain x 1e3")
    right.set_ylabel("L(null) - L(own label), x 1e3", fontsize=8)
    if best_step is not None:
        ax.axvline(best_step, color="tab:green", linewidth=1.2, label=f"published: step {best_step}")
    for a in (ax, right):
        a.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7, frameon=False, loc="lower right")
    ax.set_title(title, fontsize=9)
    return _figure_image(fig)


def figures_by_time(points: list[dict], panels: dict[str, str], title: str, size=(820, 280)) -> Image.Image:
    """One panel per figure (key -> axis label) against the training budget
    in minutes on a log axis: the model and its control (mean, with the
    spread over seeds as error bars where there are several), each beside
    its own chance level dashed in its colour. `points`: {"minutes",
    "model": {key: mean_sd}, "control": {...}, "chance": {"model": {key:
    mean_sd}, <control kind>: {...}}}."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(size[0] / 100, size[1] / 100), squeeze=False)
    minutes = [p["minutes"] for p in points]
    control_kind = next((k for p in points for k in p["chance"] if k != "model"), None)
    for ax, (key, label) in zip(axes[0], panels.items()):
        for kind, chance_kind, colour, name in (("model", "model", "tab:blue", "model"), ("control", control_kind, "tab:orange", "shuffled-label control")):
            got = [(p["minutes"], p[kind][key]) for p in points if (p.get(kind) or {}).get(key)]
            if not got:
                continue
            spread = [s["sd"] for _, s in got]
            ax.errorbar([x for x, _ in got], [s["mean"] for _, s in got], yerr=None if all(v is None for v in spread) else [v or 0.0 for v in spread],
                        marker="o", markersize=3, capsize=2, color=colour, label=name)
            chance = [(p["minutes"], p["chance"][chance_kind][key]["mean"]) for p in points if ((p["chance"].get(chance_kind) or {}).get(key))]
            if chance:
                ax.plot(*zip(*chance), linestyle="--", linewidth=1, color=colour, alpha=0.7, label=f"chance ({kind})")
        ax.set_ylim(bottom=0)  # rates: a difference of 0.02 must not fill the panel
        ax.set_xscale("log")
        ax.set_xticks(minutes, [f"{m:g}" for m in minutes])
        ax.minorticks_off()
        ax.set_xlabel("training budget (minutes)", fontsize=8)
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(wspace=0.35)
    return _figure_image(fig)


def heatmap_grid(images: list[Image.Image], maps: list[np.ndarray], captions: list[str], title: str, columns: int = 4) -> Image.Image:
    """Each image with its typicality map over it, on one colour scale shared
    by every map (diverging around zero: red where knowing the label helps
    denoise, blue where it hurts), with a colour bar saying what the colours
    are; the scale is the 99th percentile of |map| over the maps shown, so
    one hot pixel does not wash the rest out."""
    plt = _pyplot()
    ups = [np.asarray(Image.fromarray(m.astype(np.float32)).resize(img.size, Image.BILINEAR)) for img, m in zip(images, maps)]
    bound = float(np.percentile(np.abs(np.concatenate([u.ravel() for u in ups])), 99)) if ups else 1.0
    bound = bound or 1.0
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.1 * columns + 0.8, 2.3 * rows), squeeze=False)
    shown = None
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, up, caption in zip(axes.ravel(), images, ups, captions):
        ax.imshow(np.asarray(img.convert("L")), cmap="gray", interpolation="nearest")
        shown = ax.imshow(up, cmap="RdBu_r", vmin=-bound, vmax=bound, alpha=0.6, interpolation="bilinear")
        ax.set_title(caption, fontsize=7)
    if shown is not None:
        bar = fig.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.025, pad=0.02)
        bar.set_label("typicality per pixel: L(null) - L(label)", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    return _figure_image(fig)


class ImageCache:
    """Decoded images by path, so a grid opens each file once."""

    def __init__(self):
        self._cache: dict[str, Image.Image] = {}

    def get(self, path: str) -> Image.Image:
        if path not in self._cache:
            self._cache[path] = load_rgb(path)
        return self._cache[path]

    def crop(self, path: str, box: tuple[int, int, int, int]) -> Image.Image:
        return self.get(path).crop(box)


def patch_strip_rows(groups: list[tuple[str, list[tuple[str, tuple[int, int, int, int]]]]], cache: ImageCache | None = None) -> list[tuple[str, list[Image.Image]]]:
    """(caption, [(path, box), ...]) groups to rows of crops."""
    cache = cache or ImageCache()
    return [(caption, [cache.crop(p, b) for p, b in items]) for caption, items in groups]
