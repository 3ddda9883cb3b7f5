"""Held-out accuracy of the diffusion classifier when each label's gain is
read where it is largest (a window of the map) instead of over the whole
image: on photo-shapes the label is one object of about a tenth of the
image, so the image mean dilutes it with background where no label helps
(docs/QUALITY.md, "Where classification is lost").

    .venv/bin/python docs/experiments/pooled_classification.py <project dir> <dataset> [n_samples] [model,control]

Every held-out (`val`) image is scored under every label at full N, on the
dataset's own noise set (`score_labels`, as the `label_matrix` asset does,
without its adaptive elimination), and classified by:
  mean     the image-mean gain (the classifier `accuracy_val` reports, at full N)
  win<k>   the largest mean gain over k x k windows of the model's grid (stride 1)
  top<q>   the mean of the q highest-gain cells of the map
A shuffled control (`diffmine eval`'s, under <lake>/files/<dataset>/controls/shuffled)
is scored the same way: a rule that reads noise as label would lift it too.
Per rule: accuracy, its 95 % bootstrap interval over the images, chance 1/L.
"""
import glob
from pathlib import Path
import sys

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

from diffmine_assets.mining.config.project import load_config
from diffmine_assets.mining.training.checkpoints import load_checkpoint
from diffmine_assets.mining.typicality.score import score_labels

home, dataset = sys.argv[1].rstrip("/") + "/", sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 16
which = sys.argv[4].split(",") if len(sys.argv) > 4 else ["model", "control"]
project = load_config(home + "diffmine.yaml")
spec = project.dataset(dataset)
lake = str(project.lake) + "/"
images = pl.read_parquet(lake + f"images/dataset={dataset}/**/*.parquet") if glob.glob(lake + f"images/dataset={dataset}") else pl.read_parquet(lake + "images/**/*.parquet")
val = images.filter(pl.col("split") == "val").sort("image_id")
paths = {"model": pl.read_parquet(lake + "checkpoint/**/*.parquet")["path"][0]}
controls = [p for p in glob.glob(lake + f"files/{dataset}/controls/shuffled/*") if "in_progress" not in Path(p).name]
if controls:
    paths["control"] = controls[0]
opts = spec.typicality.model_copy(update={"n_samples": n})


def rules(maps: np.ndarray) -> dict[str, np.ndarray]:
    """(B, L, h, w) gain maps -> (B, L) score per rule."""
    m = torch.from_numpy(maps).float()
    B, L, h, w = m.shape
    out = {"mean": m.mean((2, 3))}
    for k in (4, 6, 8, 12):
        if k < h:
            out[f"win{k}"] = F.avg_pool2d(m.view(B * L, 1, h, w), k, stride=1).view(B, L, -1).amax(-1)
    flat = m.view(B, L, -1)
    for q in (16, 64):
        out[f"top{q}"] = flat.topk(q, dim=-1).values.mean(-1)
    return {k: v.numpy() for k, v in out.items()}


def interval(hits: np.ndarray, rng=np.random.default_rng(0)) -> tuple[float, float]:
    means = hits[rng.integers(0, len(hits), (2000, len(hits)))].mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


labels = sorted(images["label_key"].unique().to_list())
truth = np.array([labels.index(k) for k in val["label_key"].to_list()])
print(f"{dataset}: {len(val)} held-out images, {len(labels)} labels (chance {1 / len(labels):.3f}), N = {n}", flush=True)
for name in which:
    if name not in paths:
        print(f"{name}: no stored checkpoint under {lake}", flush=True)
        continue
    model = load_checkpoint(paths[name])
    model_labels = list(model.labels) if hasattr(model, "labels") else labels
    groups = score_labels(model, val, opts, under=[tuple(labels)] * len(val), pilot=images)
    g = groups[0]
    maps = g.result.maps.numpy()  # (B, L, h, w): gain of each label against the null
    for rule, score in rules(maps).items():
        hits = (score.argmax(1) == truth).astype(float)
        lo, hi = interval(hits)
        print(f"{name:8s} {rule:6s} accuracy {hits.mean():.3f} [{lo:.3f}, {hi:.3f}]", flush=True)
