"""Rescore a seed project's stored checkpoint with other typicality options
(docs/QUALITY.md, issue 11): pixel AP, top-1 and held-out accuracy.

    .venv/bin/python docs/experiments/rescore_options.py data/lake/files/builtin/seeds/data1-model1 '{"n_samples": 64}' model
"""
import sys, json, glob
import polars as pl
from diffmine_assets.mining.config.project import load_config
from diffmine_assets.mining.evaluation.metrics import typicality_figures, classification_figures
from diffmine_assets.mining.patches import patch_table
from diffmine_assets.mining.training.checkpoints import load_checkpoint
from diffmine_assets.mining.typicality.score import score_labels
home = sys.argv[1].rstrip("/") + "/"; settings = json.loads(sys.argv[2]); which = sys.argv[3].split(",")
spec = load_config(home + "diffmine.yaml").dataset("builtin")
images = pl.read_parquet(home + "lake/images/**/*.parquet")
boxes = pl.read_parquet(home + "lake/ground_truth_boxes/**/*.parquet")
paths = {"model": pl.read_parquet(home + "lake/checkpoint/**/*.parquet")["path"][0],
         "control": [p for p in glob.glob(home + "lake/files/builtin/controls/shuffled/*") if not p.endswith("in_progress")][0]}
opts = spec.typicality.model_copy(update=settings)
for name in which:
    model = load_checkpoint(paths[name])
    groups = score_labels(model, images, opts, pilot=images, matrix="held-out")
    ps = [patch_table(g.table("x"), g.replicate_maps, spec.patches)[0] for g in groups]
    f = typicality_figures(pl.concat(ps), boxes, pl.concat([g.rows for g in groups]), {g.key: g.maps for g in groups})
    c = classification_figures(pl.concat([g.matrix_table("x") for g in groups if g.matrix is not None]), images)
    print(name, settings, {k: f[k] for k in ("top1_hit_rate", "pixel_auc_pr")}, {k: v for k, v in c.items() if "accuracy" in k and not isinstance(v, dict)}, flush=True)
