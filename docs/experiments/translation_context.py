"""Is the swap gap of masked translation in the edit or in the context it is
scored in? (docs/TRANSLATION.md, issue 29, "Where the last swaps are lost")

On a seed project's checkpoint, the PER most typical images of each label
translated into every other label with the default (masked) options and by
plain regeneration; then four composites of the two, each scored like a
translation and paired with regeneration:

- `regeneration inside the mask`: regeneration's pixels inside the edit mask,
  the source outside (shifted per channel by regeneration's mean change
  there, as `keep_outside: layout` does): the masked translation's own
  context with regeneration's edit;
- `regeneration inside the boxes`: the same with the image's own-label
  element boxes as the mask (an oracle edit confined to the elements);
- `masked inside, regeneration outside`: the masked translation's pixels
  inside its mask, regeneration's outside: the masked edit in regeneration's
  context;
- `regeneration inside the mask, the translation outside`: `diffmine eval`'s
  confined control (`evaluation/confined.py`), which differs from the
  translation only inside the mask (the outside tinted by the translation's
  own shift, not regeneration's).

    .venv/bin/python docs/experiments/translation_context.py /tmp/s29/seed5 8
"""
import json
import sys

import polars as pl
import torch

from diffmine_assets.mining.config import TranslationOptions
from diffmine_assets.mining.evaluation.translations import per_translation, summarise, translation_gaps
from diffmine_assets.mining.translation.inversion import to_uint8, translate
from diffmine_assets.mining.translation.tables import score_translations
from seed_translations import load

per = int(sys.argv[2])
S = load(sys.argv[1], per)
spec, images, boxes, model, labels, rows, x0, src, targets, sources, trows = (getattr(S, k) for k in ("spec", "images", "boxes", "model", "labels", "rows", "x0", "src", "targets", "sources", "trows"))
index = [i for i, ts in enumerate(targets) for _ in ts]
source_px = x0[index].float()
opts = TranslationOptions()
masked, res = translate(model, x0, src, targets, opts)
regen, _ = translate(model, x0, src, targets, opts, method="regenerate")
masked = torch.stack([o for os in masked for o in os]).float()
regen = torch.stack([o for os in regen for o in os]).float()
side = x0.shape[-1]
mask = res.masks[:, None].float()

own = boxes.filter(pl.col("role") == "label")
box_mask = torch.zeros_like(mask)
for j, r in enumerate(trows.iter_rows(named=True)):
    for b in own.filter(pl.col("image_id") == r["image_id"]).iter_rows(named=True):
        sx, sy = side / r["width"], side / r["height"]
        box_mask[j, 0, int(b["y0"] * sy) : max(int(b["y0"] * sy) + 1, round(b["y1"] * sy)), int(b["x0"] * sx) : max(int(b["x0"] * sx) + 1, round(b["x1"] * sx))] = 1


def outside_shifted(where: torch.Tensor) -> torch.Tensor:
    """The source outside `where`, shifted per channel by regeneration's mean change there."""
    keep = 1 - where
    shift = ((regen - source_px) * keep).sum(dim=(-2, -1), keepdim=True) / keep.sum(dim=(-2, -1), keepdim=True).clamp_min(1)
    return source_px + shift


def score(pixels: torch.Tensor):
    sc = score_translations(model, pixels, trows["label_key"].to_list(), trows["target_label_key"].to_list(), spec.typicality, pilot=images)
    return per_translation(trows, sc.maps.numpy(), sources, [to_uint8(o) for o in pixels], boxes)


base = score(regen)
print(json.dumps({"composite": "plain regeneration", **{k: v for k, v in summarise(base, True).items() if k != "chance"}}), flush=True)
composites = {
    "masked translation (the default)": masked,
    "regeneration inside the mask": mask * regen + (1 - mask) * outside_shifted(mask),
    "regeneration inside the boxes": box_mask * regen + (1 - box_mask) * outside_shifted(box_mask),
    "masked inside, regeneration outside": mask * masked + (1 - mask) * regen,
    # diffmine eval's confined control (evaluation/confined.py): differs from the translation only inside the mask
    "regeneration inside the mask, the translation outside": mask * regen + (1 - mask) * masked,
}
for name, pixels in composites.items():
    each = score(pixels)
    f = summarise(each, True)
    gaps = translation_gaps(each, {"regeneration": base})
    print(json.dumps({"composite": name, "win": f["translation_target_win"], "swap": f["element_swap_rate"], "layout": f["layout_ssim"],
                      **{k: [g["difference"], g["low"], g["high"]] for k, g in gaps.items() if "swap" in k or "win" in k}}), flush=True)
