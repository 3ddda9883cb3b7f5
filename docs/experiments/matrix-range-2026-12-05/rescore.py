"""Re-score held-out classification of stored bench checkpoints under other typicality options."""
import sys, json, time
sys.path.insert(0, "/work/main")
from pathlib import Path
from diffmine_assets.mining.config.project import load_config, with_overrides
from diffmine_assets.mining.training.checkpoints import load_checkpoint
from diffmine_assets.bench.common import prepare
from diffmine_assets.bench.training import score_held_out

proj = load_config(Path("/work/exp/film/diffmine.yaml"))
spec = with_overrides(proj.dataset("photo-shapes"), {"options.seed": 1})
root = Path("/work/exp/film/data/lake/files/photo-shapes/bench")
images, boxes = prepare(spec, root / "data-1")
ck = sys.argv[1]
sets = json.loads(sys.argv[2])
model = load_checkpoint(ck)
for ov in sets:
    s = with_overrides(spec, ov) if ov else spec
    t = time.time()
    f, c = score_held_out(model, images, boxes if ov.get("_boxes") else None, s.typicality, s.patches)
    print(json.dumps({"ck": ck.split("/runs/")[1], "ov": ov, "acc": f["accuracy_val"], "s": round(time.time()-t)}), flush=True)
