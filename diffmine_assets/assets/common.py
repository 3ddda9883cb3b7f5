"""What every stage's assets share: where torch steps run, which job an
asset belongs to, its code version, the metadata people read in the UI
(tables and pictures), progress in the run's log, and reading every label's
rows of a table."""

import base64
import hashlib
import json
import time
from pathlib import Path

import polars as pl
from dagster import JsonMetadataValue, MetadataValue, TableColumn, TableRecord, TableSchema
from PIL import Image

from .. import __version__
from ..mining.report.pictures import png_bytes
from ..progress import eta, report
from ..storage.lake import Lake

TORCH_POOL = "torch"
# Where a torch step runs beyond one machine: the `gpu` Celery queue, or a
# Kubernetes pod that asks for one GPU (deploy/). Other steps go to the
# executor's default queue, `cpu`. The local executor ignores both.
GPU_STEP_TAGS = {
    "dagster-celery/queue": "gpu",
    "dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}},
}

# Which of its dataset's jobs (partitions.py) an asset runs in: definitions.py
# makes one job per value from the assets that carry it.
JOB_TAG = "diffmine/job"


STAGE_TAG = "diffmine/stage"


def in_job(kind: str, stage: str) -> dict[str, str]:
    """An asset's tags: the job that runs it, and its stage of the method
    (dataset, model, typicality, elements, translation, report, baseline).
    Each dataset is one asset group, so the UI's lineage shows one graph per
    dataset; the stage is a tag to filter by inside it (tag:diffmine/stage=...)."""
    return {JOB_TAG: kind, STAGE_TAG: stage}


def code_version(*parts) -> str:
    """The diffmine release plus a hash of what an asset's results depend on
    besides its inputs (the options that change them: `options.version()`).

    Dagster marks an asset stale when its code version differs from the one
    its latest materialization recorded, and `diffmine materialize` reruns
    exactly the stale or missing ones: editing `typicality:` in diffmine.yaml
    shows `image_typicality` and everything below it stale, in the UI too,
    and leaves the checkpoint fresh. Logging, saving and batch sizes are left
    out of the options' versions (RUN_ONLY in mining/config/options.py)."""
    text = json.dumps([str(p) for p in parts])
    return f"{__version__}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def picture(img: Image.Image, saved_to: Path | None = None, alt: str = "preview") -> MetadataValue:
    """A picture shown inline in the UI (markdown with a data URI), also saved
    as a PNG in the lake when `saved_to` is given."""
    data = png_bytes(img)
    if saved_to is not None:
        saved_to.parent.mkdir(parents=True, exist_ok=True)
        saved_to.write_bytes(data)
    return MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})")


SIGNIFICANT = 4


def rounded(value):
    """A float to 4 significant digits (0.0014074036461124706 -> 0.001407),
    inside dicts, lists and JSON metadata too: what a person reads in the
    UI; the tables keep full precision."""
    if isinstance(value, JsonMetadataValue):
        return MetadataValue.json(rounded(value.data))
    if isinstance(value, MetadataValue):  # paths, pictures, tables: as they are (some are tuples underneath)
        return value
    if isinstance(value, float):
        return float(f"{value:.{SIGNIFICANT}g}") if value == value and abs(value) != float("inf") else value
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    return value


def records_table(header: list[str], rows: list[list], limit: int = 50) -> MetadataValue:
    """A table the UI shows as one (sortable) table, typed per column; the
    first `limit` rows, with a last row saying how many were left out."""

    def cell(v):
        return rounded(v) if isinstance(v, (int, float, bool)) or v is None else str(v)

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


def log_tenths(log, what: str, stage: str):
    """A progress callback that logs about ten times over a step (and feeds
    the terminal's bar every time)."""
    started = time.monotonic()
    state = {"next": 0.1}

    def progress(done: int, total: int) -> None:
        elapsed = time.monotonic() - started
        report(stage, done, total, f"{done / max(elapsed, 1e-9):.0f} rows/s  ETA {eta(elapsed / max(done, 1) * (total - done))}")
        if done >= state["next"] * total or done == total:
            log.info(f"{done}/{total} {what}  {done / max(elapsed, 1e-9):.0f}/s  ETA {elapsed / max(done, 1) * (total - done):.0f} s")
            state["next"] = done / total + 0.1

    return progress


def read_labels(lake: Lake, table: str, dataset: str, keys: list[str]) -> pl.DataFrame | None:
    """Every label's rows of a per-label table, or None unless each label has its partition."""
    if not all(lake.has_partition(table, dataset, k) for k in keys):
        return None
    return pl.concat([lake.read_partition(table, dataset, k) for k in keys], how="diagonal_relaxed")
