"""Correspondence-based mining (Doersch et al. 2012, "What makes Paris look
like Paris?"), the method typicality replaces (METHOD.md section 7).

1. Candidate patches: HOG descriptors (scikit-image) of windows at several
   scales, computed once per image on a HOG pyramid (a window is a block of
   HOG cells, stride one cell), zero-mean and unit-norm; candidates are drawn
   at random from the positive (label's) images among windows with above-median
   gradient energy, as the paper draws high-contrast patches.
2. Nearest neighbours of every candidate among the windows of every image, one
   neighbour per image at most and never from the candidate's own image
   (scikit-learn's exact k-NN, vectorised: no Python loop over pairs); a
   candidate's score is the share of its k neighbours that are positive.
3. The best candidates, dropping one whose neighbours mostly repeat a better
   one's, seed linear SVMs (scikit-learn) trained on the candidate and its
   positive neighbours against negatives; `rounds` times, the detector is run
   over one half of the positive images (the halves alternate, the paper's
   cross-validation), its best window per image in the top k become the next
   positives, and the highest-scoring negative windows are added as hard
   negatives.
4. Detectors are ranked by purity: the share of positive images among the
   images of their k best detections over all images. A window's score is the
   best decision value of the kept detectors; per image the best
   non-overlapping windows, per label the top ones, in the schema of
   `patch_typicality` (`method = 'correspondence'`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from ..images import load_rgb
from ..config.options import CorrespondenceOptions

if TYPE_CHECKING:
    from sklearn.svm import LinearSVC

# scikit-image and scikit-learn (about 2 s to import) are imported in the
# functions that use them, so loading the definitions does not pay for them

BLOCK = 2  # HOG cells per block side


@dataclass
class Windows:
    """Every window of a set of images: descriptors, boxes (original pixels),
    the image each comes from, and its gradient energy."""

    desc: np.ndarray  # (n, d) float32, zero-mean unit-norm
    boxes: np.ndarray  # (n, 4) int32: x0, y0, x1, y1
    image: np.ndarray  # (n,) int32: index into image_ids
    energy: np.ndarray  # (n,) float32
    image_ids: list[str]


def image_windows(rgb: np.ndarray, window_px: int, opts: CorrespondenceOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(descriptors, boxes, energy) of every window of side `window_px`
    (original pixels) of one image, from one HOG of the image resized so a
    window is `opts.cells` cells."""
    H, W = rgb.shape[:2]
    f = opts.cells * opts.cell_px / window_px
    h, w = max(1, round(H * f)), max(1, round(W * f))
    side = opts.cells * opts.cell_px
    if min(h, w) < side:
        d = (opts.cells - BLOCK + 1) ** 2 * BLOCK * BLOCK * opts.orientations
        return np.zeros((0, d), np.float32), np.zeros((0, 4), np.int32), np.zeros(0, np.float32)
    from skimage.feature import hog

    small = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR), dtype=np.float32) / 255.0
    blocks = hog(small, orientations=opts.orientations, pixels_per_cell=(opts.cell_px, opts.cell_px), cells_per_block=(BLOCK, BLOCK),
                 feature_vector=False, channel_axis=-1)  # (by, bx, 2, 2, o)
    nb = opts.cells - BLOCK + 1
    win = sliding_window_view(blocks, (nb, nb), axis=(0, 1))  # (ny, nx, 2, 2, o, nb, nb)
    ny, nx = win.shape[:2]
    desc = np.ascontiguousarray(win).reshape(ny * nx, -1).astype(np.float32)
    energy = window_energy(small, opts.cell_px, opts.cells)
    desc = desc - desc.mean(axis=1, keepdims=True)
    desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-6)
    ys, xs = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    x0 = np.round(xs.ravel() * opts.cell_px / f).astype(np.int32)
    y0 = np.round(ys.ravel() * opts.cell_px / f).astype(np.int32)
    boxes = np.stack([x0, y0, np.minimum(x0 + window_px, W), np.minimum(y0 + window_px, H)], axis=1).astype(np.int32)
    return desc, boxes, energy.astype(np.float32)


def window_energy(small: np.ndarray, cell_px: int, cells: int) -> np.ndarray:
    """Gradient energy of every window (the HOG windows' grid, row-major):
    the sum of gradient magnitudes over its cells, taken from the pixels.
    Not from the descriptor: HOG's blocks are normalised (L2-Hys), so every
    descriptor has about the same norm and a filter on it keeps everything."""
    gy, gx = np.gradient(small.mean(axis=2))
    magnitude = np.hypot(gx, gy)
    cy, cx = small.shape[0] // cell_px, small.shape[1] // cell_px
    per_cell = magnitude[: cy * cell_px, : cx * cell_px].reshape(cy, cell_px, cx, cell_px).sum(axis=(1, 3))
    return sliding_window_view(per_cell, (cells, cells)).sum(axis=(2, 3)).ravel()


def all_windows(paths: list[str], image_ids: list[str], opts: CorrespondenceOptions) -> Windows:
    descs, boxes, imgs, energies = [], [], [], []
    for i, path in enumerate(paths):
        rgb = np.asarray(load_rgb(path), dtype=np.uint8)
        for window in opts.window_px:
            d, b, e = image_windows(rgb, window, opts)
            descs.append(d)
            boxes.append(b)
            energies.append(e)
            imgs.append(np.full(len(d), i, np.int32))
    return Windows(np.concatenate(descs), np.concatenate(boxes), np.concatenate(imgs), np.concatenate(energies), list(image_ids))


def neighbours(queries: np.ndarray, query_image: np.ndarray, pool: Windows, k: int, per_image_max: int) -> np.ndarray:
    """(m, k) pool indices: each query's k nearest windows, at most one per
    image and none from the query's own image (-1 where fewer exist). One
    exact k-NN search over enough neighbours to skip whole images."""
    want = min(len(pool.desc), k * per_image_max + per_image_max)
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=want, algorithm="brute", metric="euclidean").fit(pool.desc)
    _, idx = nn.kneighbors(queries)
    out = np.full((len(queries), k), -1, dtype=np.int64)
    imgs = pool.image[idx]  # (m, want)
    for r in range(len(queries)):  # a loop over queries, not pairs
        row_imgs = imgs[r]
        ok = row_imgs != query_image[r]
        _, first = np.unique(row_imgs, return_index=True)
        keep = np.zeros(len(row_imgs), dtype=bool)
        keep[first] = True
        # np.unique sorts by image: put the survivors back in distance order
        order = np.sort(np.flatnonzero(keep & ok))
        chosen = idx[r][order][:k]
        out[r, : len(chosen)] = chosen
    return out


def brute_force_neighbours(queries: np.ndarray, query_image: np.ndarray, pool: Windows, k: int) -> np.ndarray:
    """The definition, for tests: sort every pool window by distance and walk."""
    out = np.full((len(queries), k), -1, dtype=np.int64)
    for r, q in enumerate(queries):
        dist = np.linalg.norm(pool.desc - q, axis=1)
        seen, got = set(), []
        for j in np.argsort(dist, kind="stable"):
            img = int(pool.image[j])
            if img == int(query_image[r]) or img in seen:
                continue
            seen.add(img)
            got.append(j)
            if len(got) == k:
                break
        out[r, : len(got)] = got
    return out


@dataclass
class Detector:
    seed: int  # the candidate window it grew from
    svm: "LinearSVC"
    purity: float


def _best_per_image(scores: np.ndarray, image: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each image in `images`: the index of its best-scoring window and the score."""
    order = np.lexsort((-scores, image))
    first = np.ones(len(order), dtype=bool)
    first[1:] = image[order][1:] != image[order][:-1]
    best = order[first]
    best = best[np.isin(image[best], images)]
    return best, scores[best]


def mine(positives: Windows, negatives: Windows, opts: CorrespondenceOptions) -> tuple[list[Detector], dict]:
    """The detectors of the positive set, best first, and timings."""
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(opts.seed)
    t0 = time.monotonic()
    pool = Windows(np.concatenate([positives.desc, negatives.desc]), np.concatenate([positives.boxes, negatives.boxes]),
                   np.concatenate([positives.image, negatives.image + len(positives.image_ids)]),
                   np.concatenate([positives.energy, negatives.energy]), positives.image_ids + negatives.image_ids)
    is_pos = np.zeros(len(pool.desc), dtype=bool)
    is_pos[: len(positives.desc)] = True
    strong = np.flatnonzero(positives.energy >= np.median(positives.energy))
    cand = rng.choice(strong, size=min(opts.candidates, len(strong)), replace=False)
    per_image_max = int(np.bincount(pool.image).max())
    nbrs = neighbours(positives.desc[cand], positives.image[cand], pool, opts.k, per_image_max)
    valid = nbrs >= 0
    share = np.where(valid, is_pos[np.maximum(nbrs, 0)], False).sum(1) / np.maximum(valid.sum(1), 1)
    t_nn = time.monotonic() - t0
    # the best candidates, skipping near-repeats of a better one
    seeds, covered = [], []
    for c in np.argsort(-share, kind="stable"):
        mine_ = set(nbrs[c][nbrs[c] >= 0].tolist())
        if any(len(mine_ & other) > opts.k // 2 for other in covered):
            continue
        seeds.append(c)
        covered.append(mine_)
        if len(seeds) == opts.detectors:
            break
    n_pos_images = len(positives.image_ids)
    halves = [np.arange(n_pos_images)[rng.permutation(n_pos_images) % 2 == h] for h in (0, 1)]
    neg_pool = np.arange(len(negatives.desc))
    detectors = []
    for c in seeds:
        pos_idx = np.concatenate([[cand[c]], nbrs[c][(nbrs[c] >= 0) & is_pos[np.maximum(nbrs[c], 0)]]])
        neg_idx = rng.choice(neg_pool, size=min(opts.negatives, len(neg_pool)), replace=False)
        svm = None
        for r in range(opts.rounds):
            X = np.concatenate([positives.desc[pos_idx], negatives.desc[neg_idx]])
            y = np.concatenate([np.ones(len(pos_idx)), np.zeros(len(neg_idx))])
            svm = LinearSVC(C=opts.C, class_weight="balanced", random_state=opts.seed, max_iter=5000).fit(X, y)
            pos_scores = svm.decision_function(positives.desc)
            best, score = _best_per_image(pos_scores, positives.image, halves[r % 2])
            pos_idx = best[np.argsort(-score, kind="stable")[: opts.k]]
            neg_scores = svm.decision_function(negatives.desc)
            hard = np.argsort(-neg_scores, kind="stable")[: opts.negatives // 4]
            neg_idx = np.unique(np.concatenate([neg_idx, hard]))
        all_scores = svm.decision_function(pool.desc)
        best, score = _best_per_image(all_scores, pool.image, np.arange(len(pool.image_ids)))
        top = best[np.argsort(-score, kind="stable")[: opts.k]]
        detectors.append(Detector(int(cand[c]), svm, float(is_pos[top].mean())))
    detectors.sort(key=lambda d: -d.purity)
    return detectors, {"candidates": len(cand), "seeds": len(seeds), "nn_seconds": round(t_nn, 3), "seconds": round(time.monotonic() - t0, 3)}


def window_scores(detectors: list[Detector], windows: Windows, keep: int) -> np.ndarray:
    """Each window's best decision value over the `keep` purest detectors."""
    if not detectors:
        return np.full(len(windows.desc), -np.inf, dtype=np.float64)
    W = np.stack([d.svm.coef_[0] for d in detectors[:keep]])
    b = np.array([d.svm.intercept_[0] for d in detectors[:keep]])
    return (windows.desc @ W.T.astype(np.float32) + b).max(axis=1).astype(np.float64)


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return not (a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1])


def patch_rows(windows: Windows, scores: np.ndarray, images: pl.DataFrame, per_image: int, per_label: int) -> pl.DataFrame:
    """The best non-overlapping windows of each image, then the top
    `per_label`, in the columns of patch_typicality."""
    paths = dict(zip(images["image_id"], images["path"]))
    records = []
    for i, image_id in enumerate(windows.image_ids):
        sel = np.flatnonzero(windows.image == i)
        chosen: list[int] = []
        for j in sel[np.argsort(-scores[sel], kind="stable")]:
            if all(not _overlap(windows.boxes[j], windows.boxes[c]) for c in chosen):
                chosen.append(j)
                if len(chosen) == per_image:
                    break
        for rank, j in enumerate(chosen, start=1):
            x0, y0, x1, y1 = (int(v) for v in windows.boxes[j])
            records.append((image_id, paths[image_id], x0, y0, x1, y1, float(scores[j]), rank))
    df = pl.DataFrame(records, schema=["image_id", "path", "x0", "y0", "x1", "y1", "typicality", "rank_in_image"], orient="row")
    return df.sort("typicality", descending=True).head(per_label).with_columns(
        pl.lit("top").alias("selection"), pl.int_range(1, pl.len() + 1).alias("rank_in_label"), pl.lit(None, dtype=pl.Float64).alias("stderr"))


def correspondence_patches(images: pl.DataFrame, label_key: str, opts: CorrespondenceOptions, per_image: int, per_label: int) -> tuple[pl.DataFrame, dict]:
    """The baseline's patches of one label (its images against every other
    label's): the table and figures (timings, detectors)."""
    t0 = time.monotonic()
    pos = images.filter(pl.col("label_key") == label_key)
    neg = images.filter(pl.col("label_key") != label_key)
    if pos.is_empty() or neg.is_empty():
        raise ValueError(f"label {label_key!r}: correspondence mining needs images of the label and of at least one other label")
    if opts.max_negative_images and len(neg) > opts.max_negative_images:
        neg = neg.sample(n=opts.max_negative_images, seed=opts.seed)
    P = all_windows(pos["path"].to_list(), pos["image_id"].to_list(), opts)
    N = all_windows(neg["path"].to_list(), neg["image_id"].to_list(), opts)
    t_hog = time.monotonic() - t0
    detectors, info = mine(P, N, opts)
    scores = window_scores(detectors, P, opts.keep)
    table = patch_rows(P, scores, pos, per_image, per_label)
    return table, {**info, "hog_seconds": round(t_hog, 3), "total_seconds": round(time.monotonic() - t0, 3), "windows": len(P.desc) + len(N.desc),
                   "purity_of_kept": [round(d.purity, 3) for d in detectors[: opts.keep]]}
