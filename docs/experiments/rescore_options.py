"""Rescore a seed project's stored checkpoint with other typicality options
(docs/QUALITY.md, issue 11): pixel AP, top-1 and held-out accuracy.

    .venv/bin/python docs/experiments/rescore_options.py data/lake/files/builtin/seeds/data1-model1 '{"n_samples": 64}' model
"""
import sys, json, glob
import numpy as np, polars as pl, torch
from diffmine_assets.mining.checkpoints import load_checkpoint
from diffmine_assets.mining.datasets.spec import load_config
from diffmine_assets.mining.evaluation import typicality_figures, classification_figures
from diffmine_assets.mining.tables import image_typicality_table, patch_table, label_matrix_table
from diffmine_assets.mining.tensors import load_pixels, to_model_range
from diffmine_assets.mining.typicality import dataset_noise, pilot_rows, typicality_maps, label_scores
home = sys.argv[1].rstrip("/") + "/"; settings = json.loads(sys.argv[2]); which = sys.argv[3].split(",")
spec = load_config(home + "diffmine.yaml").dataset("builtin")
images = pl.read_parquet(home + "lake/images/**/*.parquet")
boxes = pl.read_parquet(home + "lake/ground_truth_boxes/**/*.parquet")
paths = {"model": pl.read_parquet(home + "lake/checkpoint/**/*.parquet")["path"][0],
         "control": [p for p in glob.glob(home + "lake/files/builtin/controls/shuffled/*") if not p.endswith("in_progress")][0]}
opts = spec.typicality.model_copy(update=settings)
for name in which:
    model = load_checkpoint(paths[name])
    pilot = pilot_rows(images)
    noise = dataset_noise(model, model.encode(to_model_range(load_pixels(pilot["path"].to_list(), model.resolution))), pilot["label_key"].to_list(), opts)
    ps, maps, rs, mats = [], {}, [], []
    for key in sorted(images["label_key"].unique().to_list()):
        rows = images.filter(pl.col("label_key") == key)
        x0 = model.encode(to_model_range(load_pixels(rows["path"].to_list(), model.resolution)))
        res = typicality_maps(model, x0, [key], opts, noise=noise)
        table = image_typicality_table(rows, key, res, opts, "x", "-")
        p, _ = patch_table(table, res.replicate_maps[:, 0].numpy(), spec.patches)
        ps.append(p); maps[key] = res.maps[:, 0].numpy(); rs.append(rows)
        held = (rows["split"] == "val").to_numpy().nonzero()[0]
        sub = res.take(held)
        sc = label_scores(model, x0[held], sub, key, list(model.labels), opts)
        mats.append(label_matrix_table(rows[held.tolist()], key, sc, "x"))
    f = typicality_figures(pl.concat(ps), boxes, pl.concat(rs), maps)
    c = classification_figures(pl.concat(mats), images)
    print(name, settings, {k: f[k] for k in ("top1_hit_rate", "pixel_auc_pr")}, {k: v for k, v in c.items() if "accuracy" in k and not isinstance(v, dict)}, flush=True)
