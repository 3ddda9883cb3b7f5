"""The quality figures: typicality scored against known element boxes (the
built-in dataset, or any dataset with ground truth), clusters against the
elements they hold, and the label matrix against the true labels; each with
what it is by chance."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from ..patches import upsample


def _centre_in(boxes: pl.DataFrame, cx: float, cy: float) -> pl.DataFrame:
    return boxes.filter((pl.col("x0") <= cx) & (cx < pl.col("x1")) & (pl.col("y0") <= cy) & (cy < pl.col("y1")))


def top1_hit_rate(patches: pl.DataFrame, boxes: pl.DataFrame, images: pl.DataFrame | None = None) -> tuple[float, int]:
    """Share of images holding an element of their own label whose single most
    typical window is centred on such an element. Counted over every scored
    image (`images`, default: every image with a box) that holds one: an
    image whose best window did not survive the label's `per_label` cut
    counts as a miss, not as absent."""
    own = boxes.filter(pl.col("role") == "label")
    if images is not None:
        own = own.filter(pl.col("image_id").is_in(images["image_id"].implode()))
    best = patches.filter((pl.col("selection") == "top") & (pl.col("rank_in_image") == 1))
    hits, total = 0, 0
    for image_id, group in own.group_by("image_id"):
        row = best.filter(pl.col("image_id") == image_id[0])
        total += 1
        if row.is_empty():
            continue
        r = row.row(0, named=True)
        cx, cy = (r["x0"] + r["x1"]) / 2, (r["y0"] + r["y1"]) / 2
        hits += int(not _centre_in(group, cx, cy).is_empty())
    return (hits / total if total else float("nan")), total


def distractor_share(patches: pl.DataFrame, boxes: pl.DataFrame, top: int = 50) -> float:
    """Mean over labels of the share of the label's `top` most typical patches
    centred on a distractor element."""
    shares = []
    dis = boxes.filter(pl.col("role") == "distractor")
    for _key, group in patches.filter(pl.col("selection") == "top").group_by("label_key"):
        head = group.sort("rank_in_label").head(top)
        on = 0
        for r in head.iter_rows(named=True):
            cx, cy = (r["x0"] + r["x1"]) / 2, (r["y0"] + r["y1"]) / 2
            on += int(not _centre_in(dis.filter(pl.col("image_id") == r["image_id"]), cx, cy).is_empty())
        shares.append(on / max(len(head), 1))
    return float(np.mean(shares)) if shares else float("nan")


def pixel_average_precision(maps: np.ndarray, images: pl.DataFrame, boxes: pl.DataFrame) -> tuple[float, int]:
    """Mean over images (holding an own-label element) of the average precision
    of the upsampled map against the mask of own-label element boxes."""
    from sklearn.metrics import average_precision_score  # scikit-learn takes about 2 s to import: only where it is used

    own = boxes.filter(pl.col("role") == "label")
    aps = []
    for i, r in enumerate(images.iter_rows(named=True)):
        mine = own.filter(pl.col("image_id") == r["image_id"])
        if mine.is_empty():
            continue
        h, w = r["height"], r["width"]
        mask = np.zeros((h, w), dtype=bool)
        for b in mine.iter_rows(named=True):
            mask[b["y0"] : b["y1"], b["x0"] : b["x1"]] = True
        up = upsample(torch.from_numpy(np.ascontiguousarray(maps[i], dtype=np.float32)), h, w).numpy()
        aps.append(average_precision_score(mask.ravel(), up.ravel()))
    return (float(np.mean(aps)) if aps else float("nan")), len(aps)


def random_window_hit_rate(images: pl.DataFrame, boxes: pl.DataFrame, window_px: int, stride_px: int, counted: set[str] | None = None) -> float:
    """The top-1 hit rate of a window that knows nothing: for each image
    holding an own-label element (the images `top1_hit_rate` counts), the
    share of the positions on the grid the model's windows are chosen from
    (`window_px`, `stride_px`) whose centre lies in such an element, averaged
    over the images; an image not in `counted` (when given) is a miss, as
    it is for the model. Exact, not sampled: the stored random windows are
    cut to `per_label` a label on their own draw, so on a label of more
    images than that most images had none, and chance fell far below what
    the model's figure was held to."""
    own = boxes.filter(pl.col("role") == "label").filter(pl.col("image_id").is_in(images["image_id"].implode()))
    sizes = {r["image_id"]: (r["width"], r["height"]) for r in images.select("image_id", "width", "height").iter_rows(named=True)}
    rates = []
    for (image_id,), group in own.group_by("image_id"):
        w, h = sizes[image_id]
        if min(w, h) < window_px or (counted is not None and image_id not in counted):
            rates.append(0.0)  # no window fits: a miss, as for the model
            continue
        cx = np.arange(0, w - window_px + 1, stride_px) + window_px / 2
        cy = np.arange(0, h - window_px + 1, stride_px) + window_px / 2
        inside = np.zeros((len(cy), len(cx)), dtype=bool)
        for b in group.iter_rows(named=True):
            inside |= ((b["y0"] <= cy) & (cy < b["y1"]))[:, None] & ((b["x0"] <= cx) & (cx < b["x1"]))[None, :]
        rates.append(float(inside.mean()))
    return float(np.mean(rates)) if rates else float("nan")


def chance_levels(patches: pl.DataFrame, boxes: pl.DataFrame, images: pl.DataFrame) -> dict:
    """What each figure is without any typicality: the top-1 hit rate of a
    random window on the same grid over the same images, those whose best
    window the model kept counted, the others misses as for the model
    (`random_window_hit_rate`; the grid is read from the patches table),
    the share of pixels inside own-label boxes (the average precision of a
    map that knows nothing), and the distractor share of the stored random
    windows."""
    window_px, stride_px = int(patches["window_px"][0]), int(patches["stride_px"][0])
    # the same images count as the model's: those whose best window survived the label's per_label cut
    survived = set(patches.filter((pl.col("selection") == "top") & (pl.col("rank_in_image") == 1))["image_id"].to_list())
    hit = random_window_hit_rate(images, boxes, window_px, stride_px, counted=survived)
    own = boxes.filter(pl.col("role") == "label")
    sizes = images.select("image_id", "width", "height")
    shares = []
    for (image_id,), group in own.group_by("image_id"):
        row = sizes.filter(pl.col("image_id") == image_id)
        if row.is_empty():
            continue
        w, h = row["width"][0], row["height"][0]
        mask = np.zeros((h, w), dtype=bool)
        for b in group.iter_rows(named=True):
            mask[b["y0"] : b["y1"], b["x0"] : b["x1"]] = True
        shares.append(mask.mean())
    # the share of windows on a distractor, for windows that know nothing: every stored random one
    dis = boxes.filter(pl.col("role") == "distractor")
    randoms = patches.filter(pl.col("selection") == "random")
    on = sum(
        int(not _centre_in(dis.filter(pl.col("image_id") == r["image_id"]), (r["x0"] + r["x1"]) / 2, (r["y0"] + r["y1"]) / 2).is_empty())
        for r in randoms.iter_rows(named=True)
    ) if len(dis) else 0
    return {"top1_hit_rate": round(hit, 4), "pixel_auc_pr": round(float(np.mean(shares)), 4) if shares else float("nan"),
            "distractor_share_top50": round(on / len(randoms), 4) if len(randoms) else float("nan")}


def typicality_figures(patches: pl.DataFrame, boxes: pl.DataFrame, images: pl.DataFrame, maps_by_label: dict[str, np.ndarray]) -> dict:
    """The three quality figures of a dataset's typicality (maps_by_label:
    label_key -> (B, h, w) mean maps in the order of that label's images)."""
    hit, n_hit = top1_hit_rate(patches, boxes, images)
    aps, n_ap = [], 0
    for key, maps in maps_by_label.items():
        rows = images.filter(pl.col("label_key") == key)
        ap, n = pixel_average_precision(maps, rows, boxes)
        if n:
            aps.append(ap * n)
            n_ap += n
    return {
        "top1_hit_rate": round(hit, 4),
        "top1_images": n_hit,
        "distractor_share_top50": round(distractor_share(patches, boxes, 50), 4),
        "pixel_auc_pr": round(sum(aps) / n_ap, 4) if n_ap else float("nan"),
        "pixel_images": n_ap,
    }


def element_under_centre(members: pl.DataFrame, boxes: pl.DataFrame) -> list[str]:
    """For each patch: the kind of the element box holding its centre, or
    "none" (background)."""
    by_image = {k[0]: g for k, g in boxes.group_by("image_id")}
    kinds = []
    for r in members.iter_rows(named=True):
        cx, cy = (r["x0"] + r["x1"]) / 2, (r["y0"] + r["y1"]) / 2
        g = by_image.get(r["image_id"])
        hit = _centre_in(g, cx, cy) if g is not None else None
        kinds.append(hit["kind"][0] if hit is not None and not hit.is_empty() else "none")
    return kinds


def cluster_figures(members_by_label: dict[str, pl.DataFrame], boxes: pl.DataFrame, top: int = 3) -> dict:
    """cluster_purity (size-weighted share of members on their cluster's
    dominant element kind; background is no kind: a cluster of background
    patches is impure, its members count as misses), label_elements_found
    (share of label-specific kinds dominating one of their label's top
    clusters), distractor_top3_share (share of labels whose top clusters
    include one dominated by a distractor)."""
    distractors = set(boxes.filter(pl.col("role") == "distractor")["kind"].unique().to_list())
    own_kinds = {k: set(g["kind"].unique().to_list()) for (k,), g in boxes.filter(pl.col("role") == "label").group_by("label_key")}
    pure, total = 0, 0
    found, wanted = 0, 0
    labels_with_distractor = 0
    per_label = {}
    for key, members in members_by_label.items():
        m = members.with_columns(pl.Series("element", element_under_centre(members, boxes)))
        sizes = m.group_by("cluster").len().rename({"len": "size"})
        dom = (
            m.group_by("cluster", "element").len().sort("cluster", "len", descending=[False, True])
            .group_by("cluster", maintain_order=True).first()
        )
        on_element = (
            m.filter(pl.col("element") != "none").group_by("cluster", "element").len().sort("cluster", "len", descending=[False, True])
            .group_by("cluster", maintain_order=True).first().select("cluster", pl.col("len").alias("pure"))
        )
        dom = dom.join(sizes, on="cluster").join(on_element, on="cluster", how="left").sort("cluster")
        pure += int(dom["pure"].fill_null(0).sum())
        total += int(dom["size"].sum())
        top_dom = dom.filter(pl.col("cluster") <= top)["element"].to_list()
        mine = own_kinds.get(key, set())
        found += len(mine & set(top_dom))
        wanted += len(mine)
        labels_with_distractor += int(bool(distractors & set(top_dom)))
        per_label[key] = {"top_clusters": top_dom}
    return {
        "cluster_purity": round(pure / total, 4) if total else float("nan"),
        "label_elements_found": round(found / wanted, 4) if wanted else float("nan"),
        "distractor_top3_share": round(labels_with_distractor / len(members_by_label), 4) if members_by_label else float("nan"),
        "top_clusters_by_label": per_label,
    }


def classification_figures(matrix: pl.DataFrame, images: pl.DataFrame, split: str = "val") -> dict:
    """How often an image is most typical under its own label (the label
    matrix's prediction), over the images of `split`: the one quality figure
    any dataset has, with or without boxes. Chance is 1 / labels; an image of
    several labels (a multi-label dataset) is right under any of them, so its
    chance is its labels / labels."""
    labels = sorted(matrix["under_label_key"].unique().to_list())
    held = images.filter(pl.col("split") == split).select("image_id")
    pred = matrix.filter(pl.col("predicted")).join(held, on="image_id").select("image_id", "label_key", pl.col("under_label_key").alias("predicted_key"))
    if pred.is_empty():
        return {f"accuracy_{split}": float("nan"), f"accuracy_{split}_images": 0, "accuracy_chance": round(1 / max(len(labels), 1), 4)}
    # an image of several labels (a multi-label dataset) is right under any of them
    if "sha256" in images.columns and images["sha256"].n_unique() < len(images):
        owned = images.group_by("sha256").agg(pl.col("label_key").alias("owned"))
        pred = (
            pred.join(images.select("image_id", "sha256"), on="image_id").join(owned, on="sha256")
            .with_columns(pl.col("owned").list.contains(pl.col("predicted_key")).alias("correct"), (pl.col("owned").list.len() / len(labels)).alias("chance"))
        )
    else:
        pred = pred.with_columns((pl.col("label_key") == pl.col("predicted_key")).alias("correct"), pl.lit(1 / len(labels)).alias("chance"))
    per_label = pred.group_by("label_key").agg(pl.col("correct").mean().alias("acc"), pl.len().alias("n")).sort("label_key")
    return {
        f"accuracy_{split}": round(float(pred["correct"].mean()), 4),
        f"accuracy_{split}_images": len(pred),
        "accuracy_chance": round(float(pred["chance"].mean()), 4),
        f"accuracy_{split}_by_label": {r["label_key"]: round(r["acc"], 4) for r in per_label.iter_rows(named=True)},
    }
