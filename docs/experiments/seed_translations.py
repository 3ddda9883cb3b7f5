"""What the translation experiments (translation_sweep.py,
translation_failures.py, translation_context.py) read from a seed project:
its checkpoint, and the PER most typical images of each label with every
other label as a target, in the order `translate` and the figures expect."""
from types import SimpleNamespace

import polars as pl

from diffmine_assets.mining.config import load_config
from diffmine_assets.mining.tensors import model_space
from diffmine_assets.mining.training.checkpoints import load_checkpoint
from diffmine_assets.mining.translation.inversion import to_uint8


def load(project: str, per: int) -> SimpleNamespace:
    home = project.rstrip("/") + "/"
    spec = load_config(home + "diffmine.yaml").datasets[0]
    images = pl.read_parquet(home + "lake/images/**/*.parquet")
    typ = pl.read_parquet(home + "lake/image_typicality/**/*.parquet")
    model = load_checkpoint(pl.read_parquet(home + "lake/checkpoint/**/*.parquet")["path"][0])
    labels = sorted(images["label_key"].unique().to_list())
    top = pl.concat([typ.filter(pl.col("label_key") == k).sort("typicality", descending=True).head(per) for k in labels]).select("image_id")
    rows = images.join(top, on="image_id")
    x0 = model_space(model, rows["path"].to_list())
    src = rows["label_key"].to_list()
    targets = [[k for k in labels if k != s] for s in src]
    return SimpleNamespace(
        spec=spec, images=images, model=model, labels=labels, rows=rows, x0=x0, src=src, targets=targets,
        boxes=pl.read_parquet(home + "lake/ground_truth_boxes/**/*.parquet"),
        sources={r["image_id"]: to_uint8(x0[i]) for i, r in enumerate(rows.iter_rows(named=True))},
        # one row per translation, in translate's flattened order
        trows=pl.DataFrame([{**{k: r[k] for k in ("image_id", "label_key", "width", "height")}, "target_label_key": t}
                            for r, ts in zip(rows.iter_rows(named=True), targets) for t in ts]))
