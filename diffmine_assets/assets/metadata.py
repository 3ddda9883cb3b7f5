"""Materialization metadata that people read in the UI: tables and pictures."""

from __future__ import annotations

import base64
from pathlib import Path

from dagster import MetadataValue
from PIL import Image

from ..mining.pictures import png_bytes


def picture(img: Image.Image, saved_to: Path | None = None, alt: str = "preview") -> MetadataValue:
    """A picture shown inline in the UI (markdown with a data URI), also saved
    as a PNG in the lake when `saved_to` is given."""
    data = png_bytes(img)
    if saved_to is not None:
        saved_to.parent.mkdir(parents=True, exist_ok=True)
        saved_to.write_bytes(data)
    return MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})")


def md_table(header: list[str], rows: list[list], limit: int = 50) -> MetadataValue:
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"\n... and {len(rows) - limit} more")
    return MetadataValue.md("\n".join(lines))
