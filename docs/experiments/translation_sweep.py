"""Translation options against the translation figures (docs/TRANSLATION.md),
on a seed project's stored checkpoint: PER most typical images of each label
translated into every other label with each set of options, every set paired
with plain regeneration of the same images at the same guidance, strength,
steps and inversion (computed once per such key): paired differences with 95 %
bootstrap intervals over the source images, as `diffmine eval` gives them.

    .venv/bin/python docs/experiments/translation_sweep.py data/lake/files/builtin/seeds/data1-model1 8 '{}' '{"mask_signal": "difference", "mask_dilate": 0, "mask_threshold": 1.0}'
"""
import sys, json
import polars as pl, torch
from diffmine_assets.mining.config import TranslationOptions, load_config
from diffmine_assets.mining.evaluation.translations import per_translation, summarise, translation_gaps
from diffmine_assets.mining.tensors import model_space
from diffmine_assets.mining.training.checkpoints import load_checkpoint
from diffmine_assets.mining.translation.inversion import translate, to_uint8
from diffmine_assets.mining.translation.tables import score_translations
home = sys.argv[1].rstrip("/") + "/"
project = load_config(home + "diffmine.yaml"); spec = project.datasets[0]
images = pl.read_parquet(home + "lake/images/**/*.parquet")
boxes = pl.read_parquet(home + "lake/ground_truth_boxes/**/*.parquet")
typ = pl.read_parquet(home + "lake/image_typicality/**/*.parquet")
model = load_checkpoint(pl.read_parquet(home + "lake/checkpoint/**/*.parquet")["path"][0])
labels = sorted(images["label_key"].unique().to_list())
per = int(sys.argv[2]); sets = [json.loads(a) for a in sys.argv[3:]]
top = pl.concat([typ.filter(pl.col("label_key") == k).sort("typicality", descending=True).head(per) for k in labels]).select("image_id")
rows = images.join(top, on="image_id")
x0 = model_space(model, rows["path"].to_list())
src = rows["label_key"].to_list()
targets = [[k for k in labels if k != s] for s in src]
sources = {r["image_id"]: to_uint8(x0[i]) for i, r in enumerate(rows.iter_rows(named=True))}
trows = pl.DataFrame([{**{k: r[k] for k in ("image_id", "label_key", "width", "height")}, "target_label_key": t} for r, ts in zip(rows.iter_rows(named=True), targets) for t in ts])
def run(opts, method):
    outs, res = translate(model, x0, src, targets, opts, method=method)
    flat = [o for os in outs for o in os]
    sc = score_translations(model, torch.stack(flat), trows["label_key"].to_list(), trows["target_label_key"].to_list(), spec.typicality, pilot=images)
    return per_translation(trows, sc.maps.numpy(), sources, [to_uint8(o) for o in flat], boxes), res
cache = {}
for st in sets:
    opts = TranslationOptions(**st)
    key = (opts.guidance, opts.strength, opts.steps, opts.invert_with)
    if key not in cache:
        cache[key] = run(opts, "regenerate")[0]
        print(json.dumps({"regenerate": key, **summarise(cache[key], True)}), flush=True)
    each, res = run(opts, opts.method)
    f = summarise(each, True)
    f.update({k: [g["difference"], g["low"], g["high"]] for k, g in translation_gaps(each, {"regeneration": cache[key]}).items()})
    print(json.dumps({"opts": st, "s": round(res.seconds, 1), **{k: v for k, v in f.items() if k not in ("chance", "translations", "element_swap_translations")},
                      "mask_share": None if res.masks is None else round(float(res.masks.mean()), 3)}), flush=True)
