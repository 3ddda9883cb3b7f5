"""How well the edit mask's difference map tells the element from the
background at each noise level (docs/TRANSLATION.md, issue 29): the smoothed
map divided by its mean, inside and outside the element boxes.

    .venv/bin/python docs/experiments/mask_localisation.py <seed project> 0.5 0.2
"""
import sys, json, numpy as np, polars as pl, torch
from diffmine_assets.mining.config import TranslationOptions
from diffmine_assets.mining.tensors import model_space
from diffmine_assets.mining.training.checkpoints import load_checkpoint
from diffmine_assets.mining.translation.masks import difference_maps, gaussian_blur
from diffmine_assets.mining.evaluation.translations import background_mask
home = sys.argv[1].rstrip("/") + "/"
images = pl.read_parquet(home + "lake/images/**/*.parquet")
boxes = pl.read_parquet(home + "lake/ground_truth_boxes/**/*.parquet")
typ = pl.read_parquet(home + "lake/image_typicality/**/*.parquet")
model = load_checkpoint(pl.read_parquet(home + "lake/checkpoint/**/*.parquet")["path"][0])
labels = sorted(images["label_key"].unique().to_list())
top = pl.concat([typ.filter(pl.col("label_key") == k).sort("typicality", descending=True).head(4) for k in labels]).select("image_id")
rows = images.join(top, on="image_id")
x0 = model_space(model, rows["path"].to_list())
src = rows["label_key"].to_list()
targets = [[k for k in labels if k != s] for s in src]
print(x0.shape, model.resolution)
for strength in [float(a) for a in sys.argv[2:]]:
    opts = TranslationOptions(mask_strength=strength, mask_signal="difference")  # DiffEdit's map, as TRANSLATION.md reports it
    d = difference_maps(model, x0, src, targets, opts)
    ins, outs, q = [], [], []
    for i, r in enumerate(rows.iter_rows(named=True)):
        bg = background_mask(boxes, r["image_id"], r["width"], r["height"], x0.shape[-1])
        for m in gaussian_blur(d[i], 1.0):
            m = m.numpy(); m = m / m.mean()
            ins.append(m[~bg].mean()); outs.append(m[bg].mean()); q.append(np.quantile(m, [0.5, 0.9, 0.99]))
    print(strength, "inside/mean", np.mean(ins).round(2), "outside/mean", np.mean(outs).round(2), "quantiles", np.mean(q, 0).round(2), "box share", round(float((~bg).mean()),3))
