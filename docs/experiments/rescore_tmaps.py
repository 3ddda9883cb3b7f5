"""Rescore a seed project's stored checkpoints (model and shuffled control)
with the mean map and with t-maps (docs/QUALITY.md, issue 11).

    .venv/bin/python docs/experiments/rescore_tmaps.py data/lake/files/builtin/seeds/data1-model1
"""
import sys, json
import polars as pl, torch, torch.nn.functional as F
from diffmine_assets.mining.config.project import load_config
from diffmine_assets.mining.evaluation.metrics import typicality_figures
from diffmine_assets.mining.patches import patch_table
from diffmine_assets.mining.training.checkpoints import load_checkpoint
from diffmine_assets.mining.typicality.score import score_labels
torch.manual_seed(0)
home = sys.argv[1].rstrip("/") + "/"
spec = load_config(home + "diffmine.yaml").dataset("builtin")
images = pl.read_parquet(home + "lake/images/**/*.parquet")
boxes = pl.read_parquet(home + "lake/ground_truth_boxes/**/*.parquet")
ck = pl.read_parquet(home + "lake/checkpoint/**/*.parquet")["path"][0]
import glob
ctl = [p for p in glob.glob(home + "lake/files/builtin/controls/shuffled/*") if not p.endswith("in_progress")][0]
def smooth(x, k):
    if k <= 1: return x
    s = x.shape
    return F.avg_pool2d(x.reshape(-1, 1, *s[-2:]), k, 1, k // 2, count_include_pad=False).reshape(s)
out = {}
for name, path in (("model", ck), ("control", ctl)):
    model = load_checkpoint(path)
    opts = spec.typicality
    variants = {"mean": (None, 0), "t1": ("t", 1), "t3": ("t", 3), "t5": ("t", 5)}
    acc = {v: ([], {}, []) for v in variants}
    for g in score_labels(model, images, opts, pilot=images):
        table = g.table("x")
        rep = g.result.replicate_maps[:, 0]  # (B, G, h, w)
        G = rep.shape[1]
        for v, (kind, k) in variants.items():
            if kind is None:
                r = rep
            else:
                se = smooth(rep.std(dim=1), k) / G ** 0.5
                r = rep / (se[:, None] + 1e-12)
            p, _ = patch_table(table, r.numpy(), spec.patches)
            acc[v][0].append(p); acc[v][1][g.key] = r.mean(1).numpy(); acc[v][2].append(g.rows)
    for v, (ps, maps, rs) in acc.items():
        f = typicality_figures(pl.concat(ps), boxes, pl.concat(rs), maps)
        out[f"{name}/{v}"] = {k: f[k] for k in ("top1_hit_rate", "pixel_auc_pr", "distractor_share_top50")}
        print(name, v, out[f"{name}/{v}"], flush=True)
for v in ("mean", "t1", "t3", "t5"):
    print(v, "ratio", round(out[f"model/{v}"]["pixel_auc_pr"] / out[f"control/{v}"]["pixel_auc_pr"], 3))
print(json.dumps(out))
