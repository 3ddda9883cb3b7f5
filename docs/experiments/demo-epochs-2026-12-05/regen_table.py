"""The translation figures of the seed projects of run_epochs.sh, each evaluated again beside plain
regeneration (run_regen.sh), and their means with t-intervals over the 3 seeds.
Usage: python regen_table.py ROOT (the folder holding b120/ and b150/)."""
import json
import sys

from diffmine_assets.mining.evaluation.intervals import mean_interval
for e in (120, 150):
    gaps = {}
    for s in (1, 2, 3):
        p = f"{sys.argv[1]}/b{e}/data/lake/files/builtin/seeds/data{s}-model{s}/regen.log"
        lines = [l for l in open(p) if l.startswith("{")]
        d = json.loads(lines[-1])
        tc = d["translation_control"]
        g = d["gaps"]
        print(e, s, "win %.3f swap %.3f (regen %.3f) layout %.3f (regen %.3f) swap-regen %+.3f [%+.3f, %+.3f] swap-confined %+.3f layout-regen %+.3f" % (
            d["translation_target_win"], d["element_swap_rate"], tc["element_swap_rate"], d["layout_ssim"], tc["layout_ssim"],
            g["element_swap_rate_minus_regeneration"]["difference"], g["element_swap_rate_minus_regeneration"]["low"], g["element_swap_rate_minus_regeneration"]["high"],
            g["element_swap_rate_minus_confined_regeneration"]["difference"], g["layout_ssim_minus_regeneration"]["difference"]))
        for k in ("element_swap_rate_minus_regeneration", "layout_ssim_minus_regeneration", "element_swap_rate_minus_confined_regeneration", "translation_target_win_minus_regeneration"):
            gaps.setdefault(k, []).append(g[k]["difference"])
    for k, v in gaps.items():
        lo, hi = mean_interval(v)
        print(e, "mean", k, "%+.4f [%+.4f, %+.4f]" % (sum(v) / 3, lo, hi))
