"""The translations whose element did not swap, and why (docs/TRANSLATION.md,
issue 29's second round): for the given options, the share of the scored
element box the mask covered, beside the swapped ones, and a picture of up to
6 failures, one row each: source | mask | masked translation | plain
regeneration of the same image and target.

    .venv/bin/python docs/experiments/translation_failures.py <seed project> 16 '{}' failures.png
"""
import sys, json
import polars as pl, torch, numpy as np
from diffmine_assets.mining.config import TranslationOptions
from diffmine_assets.mining.evaluation.translations import per_translation, summarise
from diffmine_assets.mining.translation.inversion import translate, to_uint8
from diffmine_assets.mining.translation.tables import score_translations
from seed_translations import load
per = int(sys.argv[2]); st = json.loads(sys.argv[3])
S = load(sys.argv[1], per)
spec, images, boxes, model, labels, rows, x0, src, targets, sources, trows = (getattr(S, k) for k in ("spec", "images", "boxes", "model", "labels", "rows", "x0", "src", "targets", "sources", "trows"))
opts = TranslationOptions(**st)
outs, res = translate(model, x0, src, targets, opts)
flat = [o for os in outs for o in os]
sc = score_translations(model, torch.stack(flat), trows["label_key"].to_list(), trows["target_label_key"].to_list(), spec.typicality, pilot=images)
each = per_translation(trows, sc.maps.numpy(), sources, [to_uint8(o) for o in flat], boxes)
print(json.dumps(summarise(each, True)))
own = boxes.filter(pl.col("role") == "label")
m = res.masks.numpy(); side = m.shape[-1]
cov = []
for i, r in enumerate(trows.iter_rows(named=True)):
    b = own.filter(pl.col("image_id") == r["image_id"]).head(1)
    if not len(b): cov.append(None); continue
    b = b.row(0, named=True)
    sx, sy = side / r["width"], side / r["height"]
    x0_, x1_ = int(b["x0"] * sx), max(int(b["x0"] * sx) + 1, int(round(b["x1"] * sx)))
    y0_, y1_ = int(b["y0"] * sy), max(int(b["y0"] * sy) + 1, int(round(b["y1"] * sy)))
    cov.append(float(m[i, y0_:y1_, x0_:x1_].mean()))
each = each.with_columns(pl.Series("box_cover", cov), pl.Series("mask_share", m.mean(axis=(1, 2))))
print(each.group_by("element_swap").agg(pl.len(), pl.col("box_cover").mean(), pl.col("box_cover").min().alias("cover_min"), pl.col("mask_share").mean(), pl.col("layout_ssim").mean()))
print(each.filter(pl.col("element_swap") == 0).select("image_id", "target_label_key", "box_cover", "mask_share", "target_win"))
from PIL import Image
fails = [i for i, v in enumerate(each["element_swap"].to_list()) if v == 0][:6]
regen, _ = translate(model, x0, src, targets, opts, method="regenerate")
rflat = [o for os in regen for o in os]
tiles = []
for i in fails:
    r = trows.row(i, named=True)
    s = sources[r["image_id"]]; o = to_uint8(flat[i]); g = to_uint8(rflat[i])
    mk = np.repeat(np.repeat((m[i] * 255).astype(np.uint8), s.shape[0] // side, 0), s.shape[1] // side, 1)
    mk = np.stack([mk] * 3, -1)
    tiles.append(np.concatenate([s, mk, o, g], 1))
Image.fromarray(np.concatenate(tiles, 0)).resize((4 * 64 * 3, len(tiles) * 64 * 3), Image.NEAREST).save(sys.argv[4])
