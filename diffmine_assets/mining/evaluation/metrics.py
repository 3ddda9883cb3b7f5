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


def top1_hits(patches: pl.DataFrame, boxes: pl.DataFrame, images: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per image holding an element of its own label (of `images`, default:
    every image with a box): 1.0 when its single most typical window is
    centred on such an element, else 0.0; an image whose best window did
    not survive the label's `per_label` cut is a miss, not absent."""
    own = boxes.filter(pl.col("role") == "label")
    if images is not None:
        own = own.filter(pl.col("image_id").is_in(images["image_id"].implode()))
    best = patches.filter((pl.col("selection") == "top") & (pl.col("rank_in_image") == 1))
    best = dict(reversed([(r["image_id"], r) for r in best.iter_rows(named=True)]))  # the first row of an image, as before
    ids, hits = [], []
    for (image_id,), group in own.group_by("image_id"):
        r = best.get(image_id)
        ids.append(image_id)
        hits.append(0.0 if r is None else float(not _centre_in(group, (r["x0"] + r["x1"]) / 2, (r["y0"] + r["y1"]) / 2).is_empty()))
    return pl.DataFrame({"image_id": ids, "value": hits}, schema={"image_id": pl.String, "value": pl.Float64})


def top1_hit_rate(patches: pl.DataFrame, boxes: pl.DataFrame, images: pl.DataFrame | None = None) -> tuple[float, int]:
    """Share of images holding an element of their own label whose single most
    typical window is centred on such an element (`top1_hits`), and how many
    images were counted."""
    hits = top1_hits(patches, boxes, images)
    return (float(hits["value"].mean()) if len(hits) else float("nan")), len(hits)


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


def _own_mask(group: pl.DataFrame, w: int, h: int) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    for b in group.iter_rows(named=True):
        mask[b["y0"] : b["y1"], b["x0"] : b["x1"]] = True
    return mask


def pixel_aps(maps: np.ndarray, images: pl.DataFrame, boxes: pl.DataFrame) -> pl.DataFrame:
    """Per image holding an own-label element (`maps[i]` is the map of the
    i-th row of `images`): the average precision of the upsampled map
    against the mask of its own-label element boxes (`value`) and that of a
    map that knows nothing, the share of the image inside them (`chance`)."""
    from sklearn.metrics import average_precision_score  # scikit-learn takes about 2 s to import: only where it is used

    own = {k: g for (k,), g in boxes.filter(pl.col("role") == "label").group_by("image_id")}
    ids, aps, shares = [], [], []
    for i, r in enumerate(images.iter_rows(named=True)):
        mine = own.get(r["image_id"])
        if mine is None:
            continue
        h, w = r["height"], r["width"]
        mask = _own_mask(mine, w, h)
        up = upsample(torch.from_numpy(np.ascontiguousarray(maps[i], dtype=np.float32)), h, w).numpy()
        ids.append(r["image_id"])
        aps.append(float(average_precision_score(mask.ravel(), up.ravel())))
        shares.append(float(mask.mean()))
    return pl.DataFrame({"image_id": ids, "value": aps, "chance": shares}, schema={"image_id": pl.String, "value": pl.Float64, "chance": pl.Float64})


def pixel_average_precision(maps: np.ndarray, images: pl.DataFrame, boxes: pl.DataFrame) -> tuple[float, int]:
    """Mean over images (holding an own-label element) of the average precision
    of the upsampled map against the mask of own-label element boxes."""
    aps = pixel_aps(maps, images, boxes)
    return (float(aps["value"].mean()) if len(aps) else float("nan")), len(aps)


def random_window_hits(images: pl.DataFrame, boxes: pl.DataFrame, window_px: int, stride_px: int, counted: set[str] | None = None) -> pl.DataFrame:
    """The top-1 hit rate of a window that knows nothing, per image holding
    an own-label element (the images `top1_hits` counts; `chance`): the
    share of the positions on the grid the model's windows are chosen from
    (`window_px`, `stride_px`) whose centre lies in such an element; an
    image not in `counted` (when given) is a miss, as it is for the model.
    Exact, not sampled: the stored random windows are cut to `per_label` a
    label on their own draw, so on a label of more images than that most
    images had none, and chance fell far below what the model's figure was
    held to."""
    own = boxes.filter(pl.col("role") == "label").filter(pl.col("image_id").is_in(images["image_id"].implode()))
    sizes = {r["image_id"]: (r["width"], r["height"]) for r in images.select("image_id", "width", "height").iter_rows(named=True)}
    ids, rates = [], []
    for (image_id,), group in own.group_by("image_id"):
        w, h = sizes[image_id]
        ids.append(image_id)
        if min(w, h) < window_px or (counted is not None and image_id not in counted):
            rates.append(0.0)  # no window fits: a miss, as for the model
            continue
        cx = np.arange(0, w - window_px + 1, stride_px) + window_px / 2
        cy = np.arange(0, h - window_px + 1, stride_px) + window_px / 2
        inside = np.zeros((len(cy), len(cx)), dtype=bool)
        for b in group.iter_rows(named=True):
            inside |= ((b["y0"] <= cy) & (cy < b["y1"]))[:, None] & ((b["x0"] <= cx) & (cx < b["x1"]))[None, :]
        rates.append(float(inside.mean()))
    return pl.DataFrame({"image_id": ids, "chance": rates}, schema={"image_id": pl.String, "chance": pl.Float64})


def random_window_hit_rate(images: pl.DataFrame, boxes: pl.DataFrame, window_px: int, stride_px: int, counted: set[str] | None = None) -> float:
    """The mean over images of `random_window_hits`."""
    rates = random_window_hits(images, boxes, window_px, stride_px, counted)
    return float(rates["chance"].mean()) if len(rates) else float("nan")


def _survivors(patches: pl.DataFrame) -> set[str]:
    """The images whose best window survived their label's per_label cut: the images the model's top-1 counts as scored."""
    return set(patches.filter((pl.col("selection") == "top") & (pl.col("rank_in_image") == 1))["image_id"].to_list())


def chance_levels(patches: pl.DataFrame, boxes: pl.DataFrame, images: pl.DataFrame) -> dict:
    """What each figure is without any typicality: the top-1 hit rate of a
    random window on the same grid over the same images, those whose best
    window the model kept counted, the others misses as for the model
    (`random_window_hit_rate`; the grid is read from the patches table),
    the share of pixels inside own-label boxes (the average precision of a
    map that knows nothing), and the distractor share of the stored random
    windows."""
    window_px, stride_px = int(patches["window_px"][0]), int(patches["stride_px"][0])
    hit = random_window_hit_rate(images, boxes, window_px, stride_px, counted=_survivors(patches))
    own = boxes.filter(pl.col("role") == "label")
    sizes = {r["image_id"]: (r["width"], r["height"]) for r in images.select("image_id", "width", "height").iter_rows(named=True)}
    shares = [_own_mask(group, *sizes[image_id]).mean() for (image_id,), group in own.group_by("image_id") if image_id in sizes]
    # the share of windows on a distractor, for windows that know nothing: every stored random one
    dis = boxes.filter(pl.col("role") == "distractor")
    randoms = patches.filter(pl.col("selection") == "random")
    on = sum(
        int(not _centre_in(dis.filter(pl.col("image_id") == r["image_id"]), (r["x0"] + r["x1"]) / 2, (r["y0"] + r["y1"]) / 2).is_empty())
        for r in randoms.iter_rows(named=True)
    ) if len(dis) else 0
    return {"top1_hit_rate": round(hit, 4), "pixel_auc_pr": round(float(np.mean(shares)), 4) if shares else float("nan"),
            "distractor_share_top50": round(on / len(randoms), 4) if len(randoms) else float("nan")}


def typicality_items(patches: pl.DataFrame, boxes: pl.DataFrame, images: pl.DataFrame, maps_by_label: dict[str, np.ndarray]) -> pl.DataFrame:
    """Per image and figure (`top1_hit_rate`, `pixel_auc_pr`): the model's
    value and the value of a map or window that knows nothing on the same
    image (`chance`): what the figures average and their intervals resample."""
    window_px, stride_px = int(patches["window_px"][0]), int(patches["stride_px"][0])
    top1 = top1_hits(patches, boxes, images).join(random_window_hits(images, boxes, window_px, stride_px, _survivors(patches)), on="image_id", how="left")
    aps = [pixel_aps(maps, images.filter(pl.col("label_key") == key), boxes) for key, maps in maps_by_label.items()]
    frames = [top1.with_columns(pl.lit("top1_hit_rate").alias("figure"))] + [a.with_columns(pl.lit("pixel_auc_pr").alias("figure")) for a in aps]
    return pl.concat([f.select("image_id", "figure", "value", "chance") for f in frames])


def typicality_figures(patches: pl.DataFrame, boxes: pl.DataFrame, images: pl.DataFrame, maps_by_label: dict[str, np.ndarray],
                       items: pl.DataFrame | None = None) -> dict:
    """The three quality figures of a dataset's typicality (maps_by_label:
    label_key -> (B, h, w) mean maps in the order of that label's images),
    averaged from `items` (`typicality_items`, computed when not given)."""
    items = typicality_items(patches, boxes, images, maps_by_label) if items is None else items
    hit, ap = (items.filter(pl.col("figure") == f)["value"] for f in ("top1_hit_rate", "pixel_auc_pr"))
    return {
        "top1_hit_rate": round(float(hit.mean()), 4) if len(hit) else float("nan"),
        "top1_images": len(hit),
        "distractor_share_top50": round(distractor_share(patches, boxes, 50), 4),
        "pixel_auc_pr": round(float(ap.mean()), 4) if len(ap) else float("nan"),
        "pixel_images": len(ap),
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


def _predictions(matrix: pl.DataFrame, images: pl.DataFrame, split: str) -> pl.DataFrame:
    """The held-out images of `split` with their label, whether the label
    matrix's prediction is right (`correct`) and its chance (`chance`)."""
    labels = matrix["under_label_key"].n_unique()
    held = images.filter(pl.col("split") == split).select("image_id")
    pred = matrix.filter(pl.col("predicted")).join(held, on="image_id").select("image_id", "label_key", pl.col("under_label_key").alias("predicted_key"))
    # an image of several labels (a multi-label dataset) is right under any of them
    if "sha256" in images.columns and images["sha256"].n_unique() < len(images):
        owned = images.group_by("sha256").agg(pl.col("label_key").alias("owned"))
        return (
            pred.join(images.select("image_id", "sha256"), on="image_id").join(owned, on="sha256")
            .with_columns(pl.col("owned").list.contains(pl.col("predicted_key")).alias("correct"), (pl.col("owned").list.len() / labels).alias("chance"))
        )
    return pred.with_columns((pl.col("label_key") == pl.col("predicted_key")).alias("correct"), pl.lit(1 / max(labels, 1)).alias("chance"))


def classification_items(matrix: pl.DataFrame, images: pl.DataFrame, split: str = "val") -> pl.DataFrame:
    """Per held-out image: 1.0 when its prediction is right (`value`) and
    its chance (`chance`), under the figure `accuracy_<split>`."""
    pred = _predictions(matrix, images, split)
    return pred.select("image_id", pl.lit(f"accuracy_{split}").alias("figure"), pl.col("correct").cast(pl.Float64).alias("value"), pl.col("chance").cast(pl.Float64))


def classification_figures(matrix: pl.DataFrame, images: pl.DataFrame, split: str = "val") -> dict:
    """How often an image is most typical under its own label (the label
    matrix's prediction), over the images of `split`: the one quality figure
    any dataset has, with or without boxes. Chance is 1 / labels; an image of
    several labels (a multi-label dataset) is right under any of them, so its
    chance is its labels / labels."""
    pred = _predictions(matrix, images, split)
    if pred.is_empty():
        return {f"accuracy_{split}": float("nan"), f"accuracy_{split}_images": 0, "accuracy_chance": round(1 / max(matrix["under_label_key"].n_unique(), 1), 4)}
    per_label = pred.group_by("label_key").agg(pl.col("correct").mean().alias("acc"), pl.len().alias("n")).sort("label_key")
    return {
        f"accuracy_{split}": round(float(pred["correct"].mean()), 4),
        f"accuracy_{split}_images": len(pred),
        "accuracy_chance": round(float(pred["chance"].mean()), 4),
        f"accuracy_{split}_by_label": {r["label_key"]: round(r["acc"], 4) for r in per_label.iter_rows(named=True)},
    }
