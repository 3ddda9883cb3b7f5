"""The localisation protocol on ChestX-ray14-format fixtures of several seeds
(findings drawn inside their listed boxes): the trained model, its
shuffled-label control, chance, and the curve along training.

    .venv/bin/python docs/experiments/localisation_fixture.py WORKDIR SEED [SEED ...]

The recipe (200 steps, batch 16, learning rate 2e-3, 32 px) was chosen on
fixture seed 0, the test's; report the other seeds. One JSON line per seed,
then the mean and sample sd.
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from diffmine_assets.mining.config.project import parse_config  # noqa: E402
from diffmine_assets.mining.datasets.ingest import ground_truth, ingest  # noqa: E402
from diffmine_assets.mining.evaluation.controls import shuffled_labels  # noqa: E402
from diffmine_assets.mining.training.checkpoints import fit, snapshots_of  # noqa: E402
from diffmine_assets.mining.evaluation.localisation import boxed_images, localisation_by_label, localisation_chance, localisation_curve, maps_of  # noqa: E402
from diffmine_assets_tests.collection_fixtures import write_chestxray14  # noqa: E402


def run(work: Path, seed: int) -> dict:
    root = work / f"cx-{seed}"
    if not (root / "Data_Entry_2017.csv").exists():
        write_chestxray14(root, per_finding=12, seed=seed)
    spec = parse_config({"datasets": [{
        "name": "cx", "kind": "chestxray14", "path": str(root), "options": {"resolution": 32},
        "training": {"steps": 200, "batch_size": 16, "learning_rate": 0.002, "save_every": 1000, "log_every": 1000, "snapshots": 4},
        "typicality": {"n_samples": 16, "groups": 4, "batch_size": 64}}]}).datasets[0]
    images = ingest("cx", spec, work / f"_f{seed}").images
    boxes = ground_truth("cx", spec, images).boxes
    scored = boxed_images(images, boxes, per_label=100)
    out = {"fixture_seed": seed, "chance": localisation_chance(scored, boxes), "images": len(scored)}
    for name, rows in (("model", images), ("shuffled", shuffled_labels(images, spec.training.seed))):
        fitted = fit("cx", rows, spec.training, 32, f"v-{name}", work / f"ck-{seed}-{name}")
        out[name] = localisation_by_label(maps_of(fitted.model, scored, spec.typicality), scored, boxes)["localisation_ap"]
        if name == "model":
            out["curve"] = [(r["step"], r["localisation_ap"]) for r in localisation_curve(snapshots_of(fitted.path), scored, boxes, spec.typicality, log=lambda _: None)]
    return out


if __name__ == "__main__":
    work = Path(sys.argv[1])
    runs = []
    for s in sys.argv[2:]:
        runs.append(run(work, int(s)))
        print(json.dumps(runs[-1]), flush=True)
    summary = {k: {"mean": round(float(np.mean([r[k] for r in runs])), 4), "sd": round(float(np.std([r[k] for r in runs], ddof=1)), 4) if len(runs) > 1 else None}
               for k in ("model", "shuffled", "chance")}
    print(json.dumps({"seeds": [r["fixture_seed"] for r in runs], **summary}))
