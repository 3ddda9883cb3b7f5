"""Re-score held-out figures of a stored bench checkpoint under other typicality options.
usage: rescore2.py CHECKPOINT DATASET_OVERRIDES_JSON DATADIR SETS_JSON"""
import sys, json, time
sys.path.insert(0, "/work/main")
from pathlib import Path
from diffmine_assets.mining.config.project import load_config, with_overrides
from diffmine_assets.mining.training.checkpoints import load_checkpoint
from diffmine_assets.bench.common import prepare
from diffmine_assets.bench.training import score_held_out

cfg = Path(sys.argv[5]) if len(sys.argv) > 5 else Path("/work/exp/film/diffmine.yaml")
proj = load_config(cfg)
base = json.loads(sys.argv[2])
name = base.pop("_dataset", "photo-shapes")
spec = with_overrides(proj.dataset(name), base) if base else proj.dataset(name)
images, boxes = prepare(spec, Path(sys.argv[3]))
ck = sys.argv[1]
model = load_checkpoint(ck)
for ov in json.loads(sys.argv[4]):
    s = with_overrides(spec, ov) if ov else spec
    t = time.time()
    f, c = score_held_out(model, images, boxes, s.typicality, s.patches)
    print(json.dumps({"ck": ck.split("/runs/")[-1], "ov": ov, "acc": f["accuracy_val"], "top1": f.get("top1_hit_rate"), "ap": f.get("pixel_auc_pr"), "chance": c, "s": round(time.time()-t)}), flush=True)
