"""`diffmine bench sd --graph`: Stable Diffusion 1.5's shapes through the
whole graph, and what each stage costs.

In a work folder: a random pipeline of the shape (sd_layout.py: the
diffusers layout the backend loads; random weights, so speed, memory and
sizes, never quality), a folder of photographs with one object whose shape
is the label (the photo-shapes scenes, rendered at the resolution), and a
project declaring them as a dataset on the `stable-diffusion` backend. Then
`diffmine materialize` of that dataset in a process of its own, the normal
graph and not a shortcut, and from its runs one line per stage: the seconds
and peak memory its step recorded (usage.py), and the bytes it stored. Then
each unit of work (encode, decode, forward, a training step of the whole
UNet and of LoRA, each with and without gradient checkpointing) at each
batch size in a fresh process (sd_probe.py), for the memory per batch size
a GPU user sizes a machine by.

Everything is written under the work folder and kept: a second run reuses
the pipeline and the images (a folder per count and size) and materializes
what is stale (everything with --force).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from dagster import AssetRecordsFilter, DagsterInstance

from ..mining.config.datasets import BuiltinOptions
from ..mining.datasets.photo_shapes import SHAPES, layout, render
from ..mining.denoisers.sd_layout import write_random_pipeline
from ..partitions import asset_key
from .common import work_folder

DATASET = "sd-graph"
# stage -> (asset whose metadata holds its step's figures, tables it writes, folders of files it writes)
STAGES = {
    "finetune": ("checkpoint", ("checkpoint", "training_log"), ("checkpoints",)),
    "typicality": ("image_typicality", ("image_typicality", "typicality_history", "label_matrix"), ("typicality",)),
    "patches": ("patch_typicality", ("patch_typicality",), ()),
    "features": ("patch_features", ("patch_features",), ()),
    "clustering": ("clusters", ("clusters", "cluster_members"), ()),
    "translation": ("translations", ("translations",), ("translations",)),
    "parallel clusters": ("parallel_clusters", ("parallel_typicality", "parallel_clusters", "parallel_cluster_members"), ()),
}


def write_photographs(folder: Path, labels: int, per_label: int, size: int, seed: int = 1) -> list[str]:
    """`per_label` photo-shapes scenes of each of the first `labels` shapes,
    rendered at `size` px, one sub-folder per label (a `folder` dataset)."""
    opts = BuiltinOptions(preset="photo-shapes", seed=seed, images_per_label=per_label, image_size=size)
    chosen = SHAPES[:labels]
    for scene in layout(opts):
        if scene.label in chosen:
            path = folder / scene.label / f"{scene.label}_{scene.index:03d}.png"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                render(scene, opts).save(path)
    return list(chosen)


def project_config(work: Path, images: Path, pipeline: Path, resolution: int, lora_rank: int, steps: int, batch: int, n_samples: int,
                   translation_steps: int) -> Path:
    """The project of the run: small counts, the real sizes."""
    window = max(16, resolution // 8)
    dataset = {
        "name": DATASET, "kind": "folder", "path": str(images),
        # a quarter held out (4 of 16 a label at the GPU sizes): the training's held-out checks run, as they do on real data
        "options": {"resolution": resolution, "val_fraction": 0.25},
        "training": {"backend": "stable-diffusion", "model_path": str(pipeline), "lora_rank": lora_rank, "steps": steps, "batch_size": batch,
                     "warmup_steps": 0, "snapshots": 0, "save_every": steps, "log_every": steps},
        # Without the importance pilot: it is a fixed 192 evaluations (12 timestep bins x 2 draws x 4 images, label and null), drawn
        # again by each label's typicality and translation steps. At the paper's N = 100 that is 1 % of scoring a label of 100 images;
        # at this run's N on a CPU it was most of the step (16 min). Stratified antithetic draws cover [t_min, t_max) evenly at no cost.
        "typicality": {"n_samples": n_samples, "groups": 2, "batch_size": 2 * batch, "label_matrix": "held-out", "matrix_samples": 2,
                       "sampling": "stratified-antithetic"},
        "patches": {"window_px": window, "stride_px": window // 4, "per_image": 2, "per_label": 8},
        "features": {"batch_size": batch},
        "clusters": {"k": 2},
        "translation": {"images": 1, "max_translations": 1, "steps": translation_steps, "batch_size": 2 * batch, "mask_draws": 2, "top": 8, "k": 2},
    }
    project = work / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    path = project / "diffmine.yaml"
    path.write_text(yaml.safe_dump({"lake": "lake", "catalog": "catalog.duckdb", "datasets": [dataset]}, sort_keys=False))
    return path


def _bytes(*paths: Path) -> int:
    return sum(f.stat().st_size for p in paths if p.exists() for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())


def stage_table(instance: DagsterInstance, lake: Path, dataset: str = DATASET) -> list[dict]:
    """One row per stage from the runs in `instance`: the latest
    materialization of each partition of the stage's asset (seconds summed
    over label partitions, memory the highest), and the bytes of its tables
    and files in `lake`."""
    rows = []
    for stage, (asset, tables, folders) in STAGES.items():
        latest = {}
        for record in instance.fetch_materializations(AssetRecordsFilter(asset_key=asset_key(dataset, asset)), limit=1000).records:
            mat = record.asset_materialization
            latest.setdefault(mat.partition, {k: v.value for k, v in mat.metadata.items()})
        if not latest:
            continue
        seen = list(latest.values())
        peak = [m.get("step_peak_rss_mib", m.get("process_peak_rss_mib")) for m in seen]
        gpu = [m["step_peak_gpu_mib"] for m in seen if "step_peak_gpu_mib" in m]
        rows.append({"stage": stage, "asset": asset, "partitions": len(seen), "seconds": round(sum(m.get("step_seconds", 0.0) for m in seen), 1),
                     "peak_rss_mib": max((p for p in peak if p is not None), default=None), "peak_gpu_mib": max(gpu) if gpu else None,
                     "stored_bytes": _bytes(*(lake / t for t in tables), *(lake / "files" / dataset / f for f in folders))})
    return rows


def run_probe(pipeline: Path, unit: str, batch: int, resolution: int, **kw) -> dict:
    """sd_probe.probe in a fresh process; its failure (out of memory) is a row that says so."""
    args = json.dumps({"pipeline": str(pipeline), "unit": unit, "batch": batch, "resolution": resolution, **kw})
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "diffmine_assets.bench.sd_probe", args], capture_output=True, text=True)
    if done.returncode != 0:
        return {"unit": unit, "batch": batch, **kw, "failed": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1],
                "wall_s": round(time.monotonic() - t0, 1)}
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "wall_s": round(time.monotonic() - t0, 1)}


def graph_benchmark(work: Path, shape: str = "sd15", resolution: int = 512, labels: int = 2, per_label: int = 4, lora_rank: int = 16,
                    steps: int = 4, batch: int = 2, n_samples: int = 4, translation_steps: int = 10, probe_batches: tuple[int, ...] = (1, 2, 4),
                    force: bool = False, log=print) -> dict:
    pipeline = work / f"random-{shape}"
    if not (pipeline / "model_index.json").exists():
        t0 = time.monotonic()
        write_random_pipeline(pipeline, shape)
        log(f"bench sd --graph: wrote a random {shape} pipeline to {pipeline} ({time.monotonic() - t0:.0f} s)")
    images = work / f"images-{labels}x{per_label}-{resolution}px"
    names = write_photographs(images, labels, per_label, resolution)
    config = project_config(work, images, pipeline, resolution, lora_rank, steps, batch, n_samples, translation_steps)
    log(f"bench sd --graph: labels {names} x {per_label} images at {resolution} px; diffmine --config {config} materialize --dataset {DATASET}")
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "diffmine_assets.cli", "--config", str(config), "materialize", "--dataset", DATASET] + (["--force"] if force else [])
    # streamed line by line: on a leased GPU a run cut short by its time limit still shows how far each stage got
    lines = []
    env = {**os.environ, "DAGSTER_HOME": str(config.parent), "PYTHONUNBUFFERED": "1"}  # a pipe is block-buffered otherwise
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1) as proc:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if not lines[-1].startswith("{"):  # the command's closing JSON is read below, not echoed
                log(f"  {lines[-1]}")
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        tail = "\n".join(lines[-60:])
        how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        raise RuntimeError(f"materialize failed ({how}) after {wall:.0f} s:\n{tail}")
    out = {"shape": shape, "resolution": resolution, "labels": labels, "images_per_label": per_label, "lora_rank": lora_rank, "finetune_steps": steps,
           "batch": batch, "n_samples": n_samples, "translation_steps": translation_steps, "materialize_s": round(wall, 1),
           "probes": []}
    with DagsterInstance.from_config(str(config.parent)) as instance:
        out["stages"] = stage_table(instance, config.parent / "lake")
    for row in out["stages"]:
        gpu = f"  GPU {row['peak_gpu_mib']:>8.0f} MiB" if row["peak_gpu_mib"] is not None else ""
        log(f"  {row['stage']:<18} {row['seconds']:>8.1f} s  peak {row['peak_rss_mib'] or 0:>8.0f} MiB{gpu}  stored {row['stored_bytes'] / 2**20:>9.1f} MiB")
    # training with and without gradient checkpointing (the backend's default on a GPU), LoRA's and the whole UNet's
    trains = [{"lora_rank": r, "checkpointing": c} for r in sorted({lora_rank, 0}, reverse=True) for c in (False, True)]
    units = [("encode", {}), ("decode", {}), ("forward", {})] + [("train", kw) for kw in trains]
    for unit, kw in units:
        for b in probe_batches:
            row = run_probe(pipeline, unit, b, resolution, **kw)
            out["probes"].append(row)
            log(f"  probe {unit:<7} {json.dumps({k: v for k, v in row.items() if k not in ('resolution', 'device', 'unet_parameters')})}")
    return out


def run(project, args, log) -> dict:
    return graph_benchmark(work_folder(project, args, "sd-graph"), args.shape, args.resolution, labels=args.labels, per_label=args.per_label,
                           lora_rank=16 if args.lora_rank is None else args.lora_rank, steps=args.steps, batch=args.batch, n_samples=args.n_samples,
                           translation_steps=args.translation_steps, probe_batches=tuple(int(b) for b in args.probe_batches.split(",")),
                           force=args.force, log=log)
