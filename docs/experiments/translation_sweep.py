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
from diffmine_assets.mining.config import TranslationOptions
from diffmine_assets.mining.evaluation.translations import per_translation, summarise, translation_gaps
from diffmine_assets.mining.translation.inversion import translate, to_uint8
from diffmine_assets.mining.translation.tables import score_translations
from seed_translations import load
per = int(sys.argv[2]); sets = [json.loads(a) for a in sys.argv[3:]]
S = load(sys.argv[1], per)
spec, images, boxes, model, labels, rows, x0, src, targets, sources, trows = (getattr(S, k) for k in ("spec", "images", "boxes", "model", "labels", "rows", "x0", "src", "targets", "sources", "trows"))
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
