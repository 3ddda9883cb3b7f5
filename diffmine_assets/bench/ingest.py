"""`diffmine bench ingest`: ingestion of a large manifest, measured.

A manifest of `rows` tiny distinct images is generated once (kept under the
work folder), then ingested in a child process so its peak resident memory
is the ingestion's alone: files per second, peak RSS, and RSS per row.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..mining.config.project import parse_config
from ..mining.datasets.ingest import ingest
from ..usage import peak_rss_mib
from .common import work_folder


def write_manifest(work: Path, rows: int, side: int = 16, labels: int = 10) -> Path:
    """`rows` distinct side x side PNGs in folders of 1,000 and a CSV
    manifest of them (path, label); reused when already there."""
    manifest = work / f"manifest-{rows}.csv"
    if manifest.exists():
        return manifest
    rng = np.random.default_rng(0)
    lines = ["path,label"]
    for i in range(rows):
        rel = f"img/{i // 1000:04d}/{i:07d}.png"
        p = work / rel
        if i % 1000 == 0:
            p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8), "RGB").save(p, compress_level=1)
        lines.append(f"{rel},class-{i % labels}")
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(manifest)
    return manifest


def _child(manifest: str) -> None:
    spec = parse_config({"datasets": [{"name": "bench", "kind": "manifest", "path": manifest, "options": {"min_side": 8}}]}).datasets[0]
    t0 = time.monotonic()
    result = ingest("bench", spec, Path(manifest).parent / "_files",
                    progress=lambda d, n, r: print(f"  checked {d}/{n} ({r:.0f} files/s)", file=sys.stderr, flush=True) if d % 10240 < 1024 or d == n else None)
    seconds = time.monotonic() - t0
    print(json.dumps({"images": len(result.images), "skipped": len(result.skipped), "seconds": round(seconds, 1),
                      "files_per_s": round(len(result.images) / seconds, 1), "peak_rss_mib": round(peak_rss_mib(), 1)}))


def bench_ingest(work: Path, rows: int, log=print) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    manifest = write_manifest(work, rows)
    log(f"bench ingest: manifest of {rows} images at {manifest} ({time.monotonic() - t0:.0f} s to write)")
    baseline = subprocess.run([sys.executable, "-c", "from diffmine_assets.bench.ingest import peak_rss_mib; print(peak_rss_mib())"], capture_output=True, text=True, check=True)
    out = subprocess.run([sys.executable, "-m", "diffmine_assets.bench.ingest", str(manifest)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"the ingestion child failed:\n{out.stderr[-3000:]}")
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    import_mib = float(baseline.stdout.strip())
    figures.update({"rows": rows, "import_rss_mib": round(import_mib, 1),
                    "rss_per_1k_rows_mib": round((figures["peak_rss_mib"] - import_mib) / (rows / 1000), 3)})
    return figures


def run(project, args, log) -> dict:
    return bench_ingest(work_folder(project, args, "ingest"), args.rows, log=log)


if __name__ == "__main__":
    _child(sys.argv[1])
