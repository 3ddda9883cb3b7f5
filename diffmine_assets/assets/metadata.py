"""Materialization metadata that people read in the UI: tables and pictures."""

from __future__ import annotations

import base64
from pathlib import Path

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema
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


def records_table(header: list[str], rows: list[list], limit: int = 50) -> MetadataValue:
    """A table the UI shows as one (sortable) table, typed per column; the
    first `limit` rows, with a last row saying how many were left out."""

    def cell(v):
        return v if isinstance(v, (int, float, bool)) or v is None else str(v)

    kinds = {bool: "bool", int: "int", float: "float"}
    types = []
    for i in range(len(header)):
        seen = {type(r[i]) for r in rows[:limit] if r[i] is not None}
        types.append(kinds[seen.pop()] if len(seen) == 1 and next(iter(seen)) in kinds else "string")
    if len(rows) > limit:
        types[0] = "string"
    records = [TableRecord({h: (cell(v) if t != "string" else (None if v is None else str(v))) for h, v, t in zip(header, r, types)}) for r in rows[:limit]]
    if len(rows) > limit:
        records.append(TableRecord({header[0]: f"... and {len(rows) - limit} more", **{h: None for h in header[1:]}}))
    schema = TableSchema(columns=[TableColumn(name=h, type=t) for h, t in zip(header, types)])
    return MetadataValue.table(records=records, schema=schema)
