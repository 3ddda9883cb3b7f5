"""`diffmine bench typicality`: the typicality engine against the published loop.

(a) the published loop, re-implemented faithfully: one image at a time,
    noise in batches of 10, label and null conditions concatenated into one
    batch of 20, t uniform in [t_min, t_max) x T, the same noise for every
    image (fixed seed), per-pixel losses;
(b) the engine (`score_labels`, mining/typicality/) with its default sampling.
Both score every k x k window of every image; agreement is the Spearman rank
correlation of those window scores with a converged estimate (the engine
with N = 512, float32). Time to fidelity is the wall time of the smallest N
on a ladder whose estimate reaches the target Spearman.

On equal footing: the published loop ran in half precision on its GPU, so
here it runs at the engine's precision and memory layout (autocast to
bfloat16 where native, the network in its inference layout), and both climb
the same fine ladder of N. The speedup is split into its parts: fewer
samples for the same fidelity (sampling), cheaper evaluations at equal N
and equal precision (batching), and what the published loop in float32
would add (precision, reported, not counted). The shipped configuration
also scores its held-out images under every label (the label matrix): its
cost per image is reported beside the one-label figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from scipy.stats import spearmanr

from ..mining.config.options import TypicalityOptions
from ..mining.denoisers.base import Denoiser
from ..mining.patches import upsample, window_means
from ..mining.precision import autocast, resolve_precision
from ..mining.tensors import model_space
from ..mining.training.checkpoints import load_checkpoint
from ..mining.typicality.estimator import TypicalityResult
from ..mining.typicality.score import ScoredGroup, score_labels
from ..storage.lake import Lake


LADDER = (8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160)


def _engine(model: Denoiser, x0: torch.Tensor, label_key: str, opts: TypicalityOptions, matrix: str = "none") -> ScoredGroup:
    """The engine as the graph runs it (score_labels), on images already in model space."""
    return score_labels(model, x0, opts, under=[label_key] * len(x0), matrix=matrix)[0]


def _maps(model: Denoiser, x0: torch.Tensor, label_key: str, opts: TypicalityOptions) -> TypicalityResult:
    return _engine(model, x0, label_key, opts).result


def published_loop(model: Denoiser, x0: torch.Tensor, label_key: str, n: int, opts: TypicalityOptions, noise_batch: int = 10,
                   precision: str = "float32") -> tuple[torch.Tensor, float, int]:
    """Per-pixel typicality maps (B, h, w) the way the reference computes them,
    at the given precision (autocast) in the network's inference layout."""
    T = model.num_train_timesteps
    g = torch.Generator().manual_seed(opts.seed)
    t_all = torch.randint(int(opts.t_min * T), int(opts.t_max * T), (n,), generator=g)
    eps_all = torch.randn((n, *x0.shape[1:]), generator=g)
    cond_label = model.condition_ids([label_key])
    cond_null = model.condition_ids([None])
    maps = torch.zeros((x0.shape[0], *x0.shape[-2:]))
    evaluations = 0
    model.for_inference()
    t0 = time.monotonic()
    with torch.inference_mode(), autocast(model.module, resolve_precision(precision)):
        for i in range(x0.shape[0]):
            acc = torch.zeros(x0.shape[-2:])
            for s in range(0, n, noise_batch):
                eps = eps_all[s : s + noise_batch]
                t = t_all[s : s + noise_batch]
                m = len(t)
                xt = model.add_noise(x0[i : i + 1].expand(m, -1, -1, -1), eps, t)
                cond = torch.cat([cond_label.expand(m), cond_null.expand(m)])
                pred = model.predict(torch.cat([xt, xt]), torch.cat([t, t]), cond)
                evaluations += 2 * m
                pred = pred.float()
                loss_label = ((pred[:m] - eps) ** 2).mean(1)
                loss_null = ((pred[m:] - eps) ** 2).mean(1)
                acc += (loss_null - loss_label).sum(0)
            maps[i] = acc / n
    return maps, time.monotonic() - t0, evaluations


def window_scores(maps: torch.Tensor, size: int, window: int, stride: int) -> np.ndarray:
    return window_means(upsample(maps, size, size), window, stride).reshape(-1).numpy()


def bare_forward_rate(model: Denoiser, shape, batch_sizes=(8, 16, 24, 32, 48, 64, 96, 128), precision: str = "float32") -> tuple[float, int]:
    """Best forward passes per second of the bare network (same layout and
    precision as the engine), and at which batch size."""
    best, best_b = 0.0, batch_sizes[0]
    model.for_inference()
    with torch.inference_mode(), autocast(model.module, resolve_precision(precision)):
        for b in batch_sizes:
            x = torch.randn((b, *shape))
            t = torch.randint(100, 700, (b,))
            c = torch.zeros(b, dtype=torch.long)
            model.predict(x, t, c)
            reps = max(2, int(512 / b))
            t0 = time.perf_counter()
            for _ in range(reps):
                model.predict(x, t, c)
            rate = b * reps / (time.perf_counter() - t0)
            if rate > best:
                best, best_b = rate, b
    return best, best_b


@dataclass
class LadderPoint:
    n: int
    seconds: float
    spearman: float


def engine_options(base: TypicalityOptions, n: int, sampling: str | None = None) -> TypicalityOptions:
    """`base` at N = n: the most replicates (up to base.groups) that divide n."""
    sampling = sampling or base.sampling
    per = 2 if sampling.endswith("antithetic") else 1
    groups = next(g for g in range(min(base.groups, n // per), 1, -1) if n % (g * per) == 0)
    return TypicalityOptions.model_validate({**base.model_dump(), "n_samples": n, "groups": groups, "sampling": sampling})


def time_to_fidelity(points: list[LadderPoint], target: float) -> float | None:
    for p in sorted(points, key=lambda p: p.n):
        if p.spearman >= target:
            return p.seconds
    return None


def _ladder(run, ns, target, min_n, repeats, log, name) -> list[LadderPoint]:
    """Mean seconds and mean Spearman over `repeats` seeds at each N, up the
    ladder until the target is reached (and N >= min_n)."""
    points = []
    for n in ns:
        secs, sps = [], []
        for r in range(repeats):
            sec, sp = run(n, r)
            secs.append(sec)
            sps.append(sp)
        points.append(LadderPoint(n, float(np.mean(secs)), float(np.mean(sps))))
        log(f"{name:34s} N={n:4d}: {points[-1].seconds:7.2f} s  spearman {points[-1].spearman:.4f} (mean of {repeats})")
        if points[-1].spearman >= target and n >= min_n:
            break
    return points


def run_benchmark(model: Denoiser, x0: torch.Tensor, label_key: str, base: TypicalityOptions, *, image_size: int, window: int, stride: int,
                  target: float = 0.95, reference_n: int = 512, equal_n: int = 40, repeats: int = 3, held_out_share: float = 0.1, ladder: tuple[int, ...] = LADDER, log=print) -> dict:
    """All figures of `diffmine bench typicality` (see module docstring)."""
    size_args = (image_size, window, stride)
    B = x0.shape[0]
    log(f"converged reference: engine, N = {reference_n}, iid, float32 ...")
    ref = _maps(model, x0, label_key, engine_options(base.model_copy(update={"precision": "float32"}), reference_n, "iid"))
    ref_scores = window_scores(ref.maps[:, 0], *size_args)

    def agree(maps):
        return float(spearmanr(window_scores(maps, *size_args), ref_scores).statistic)

    kept = {}
    precision = base.precision

    def run_published(n, r, prec=precision):
        maps, sec, evals = published_loop(model, x0, label_key, n, base.model_copy(update={"seed": base.seed + 1 + r}), precision=prec)
        if n == equal_n and r == 0:
            kept[("published", prec)] = (maps, sec, evals)
        return sec, agree(maps)

    def engine_runner(sampling, precision=None):
        def run(n, r):
            opts = engine_options(base.model_copy(update={"seed": base.seed + 1 + r, **({"precision": precision} if precision else {})}), n, sampling)
            res = _maps(model, x0, label_key, opts)
            if n == equal_n and r == 0:
                kept[(sampling, precision)] = (res.maps[:, 0], res.seconds, res.forward_rows)
            return res.seconds, agree(res.maps[:, 0])
        return run

    ladder = sorted(set(ladder) | {equal_n})
    published = _ladder(run_published, ladder, target, equal_n, repeats, log, f"published loop ({precision})")
    engine = _ladder(engine_runner(base.sampling), ladder, target, equal_n, repeats, log, f"engine ({base.sampling}, {precision})")
    # the published loop as it would run in float32 here: what precision alone is worth (not counted in the speedup)
    pub32_sec, _ = run_published(equal_n, 0, "float32")
    # each choice alone, at equal N, to keep only what helps
    variants = {}
    for sampling, prec in (("iid", "float32"), ("stratified", "float32"), ("stratified-antithetic", "float32"), ("importance-antithetic", "float32"), (base.sampling, None)):
        sec, sp = engine_runner(sampling, prec)(equal_n, 0)
        label = f"{sampling}/{prec or base.precision}"
        variants[label] = {"seconds": round(sec, 3), "spearman": round(sp, 4)}
        log(f"engine {label:34s} N={equal_n}: {sec:6.2f} s  spearman {sp:.4f}")
    pub_eq = next(p for p in published if p.n == equal_n)
    eng_eq = next(p for p in engine if p.n == equal_n)
    _pub_maps, pub_sec, pub_evals = kept[("published", precision)]
    _eng_maps, eng_sec, eng_evals = kept[(base.sampling, None)]
    model.for_inference()
    bare, bare_batch = bare_forward_rate(model, tuple(x0.shape[1:]), precision=base.precision)
    eng_run = _maps(model, x0, label_key, engine_options(base, 64))
    engine_rate = eng_run.forward_rows / eng_run.seconds
    # the shipped configuration: the maps pass at the shipped N, and the label matrix on the held-out share
    shipped_run = _engine(model, x0, label_key, base, matrix="all")
    shipped, matrix = shipped_run.result, shipped_run.matrix
    matrix_rows = matrix.forward_rows if matrix is not None else 0
    matrix_sec = matrix.seconds if matrix is not None else 0.0
    share = held_out_share if base.label_matrix == "held-out" else (1.0 if base.label_matrix == "all" else 0.0)
    t_pub = time_to_fidelity(published, target)
    t_eng = time_to_fidelity(engine, target)
    n_pub = next((p.n for p in published if p.spearman >= target), None)
    n_eng = next((p.n for p in engine if p.spearman >= target), None)
    return {
        "images": B,
        "equal_n": equal_n,
        "repeats": repeats,
        "precision": precision,
        "ladder": ladder,
        "published_images_per_s": round(B / pub_eq.seconds, 2),
        "engine_images_per_s": round(B / eng_eq.seconds, 2),
        "throughput_speedup": round(pub_eq.seconds / eng_eq.seconds, 3),
        "spearman_published_vs_engine_equal_n": round(float(spearmanr(window_scores(kept[("published", precision)][0], *size_args), window_scores(kept[(base.sampling, None)][0], *size_args)).statistic), 4),
        "spearman_at_equal_n": {"published": round(pub_eq.spearman, 4), "engine": round(eng_eq.spearman, 4)},
        "variants_at_equal_n": variants,
        "target_spearman": target,
        "reference_n": reference_n,
        "published_n_to_fidelity": n_pub,
        "engine_n_to_fidelity": n_eng,
        "published_seconds_to_fidelity": round(t_pub, 3) if t_pub else None,
        "engine_seconds_to_fidelity": round(t_eng, 3) if t_eng else None,
        # equal precision, equal layout, equal ladder
        "fidelity_speedup": round(t_pub / t_eng, 3) if t_pub and t_eng else None,
        "speedup_from_sampling": round(n_pub / n_eng, 3) if n_pub and n_eng else None,
        "speedup_from_batching": round((pub_sec / pub_evals) / (eng_sec / eng_evals), 3),
        "speedup_from_precision_not_counted": round(pub32_sec / pub_sec, 3),
        "engine_forward_per_s": round(engine_rate, 1),
        "bare_forward_per_s": round(bare, 1),
        "bare_best_batch": bare_batch,
        "overhead_ratio": round(engine_rate / bare, 3),
        "engine_batch_size": base.batch_size,
        "sampling": base.sampling,
        "engine_precision": eng_run.precision,
        "label_matrix": base.label_matrix,
        "one_label_forward_per_image": round(shipped.forward_rows / B, 1),
        "matrix_forward_per_image": round(matrix_rows / B, 1),
        "shipped_forward_per_image": round(shipped.forward_rows / B + share * matrix_rows / B, 1),
        "shipped_seconds_per_image": round(shipped.seconds / B + share * matrix_sec / B, 4),
        "held_out_share": round(share, 3),
        "torch_threads": torch.get_num_threads(),
    }


def bench_typicality(project, dataset: str, label: str | None, images_n: int, log=print) -> dict:
    """The benchmark on `images_n` images of one label of a materialized
    dataset, with its checkpoint and typicality options."""
    lake = Lake(project.lake)
    spec = project.dataset(dataset)
    ckpt = lake.read_partition("checkpoint", dataset).row(0, named=True)
    model = load_checkpoint(ckpt["path"])
    images = lake.read_partition("images", dataset)
    key = label or sorted(images["label_key"].unique().to_list())[0]
    rows = images.filter((pl.col("label_key") == key) | (pl.col("label") == key)).head(images_n)
    if rows.is_empty():
        raise ValueError(f"dataset {dataset!r} has no label {key!r}")
    key = rows["label_key"][0]
    size = int(rows["width"].max())
    x0 = model_space(model, rows["path"].to_list())
    log(f"benchmark: {len(rows)} images of {dataset}/{key}, checkpoint {ckpt['checkpoint_id']}, {torch.get_num_threads()} threads")
    share = float((images["split"] == "val").mean())
    figures = run_benchmark(model, x0, key, spec.typicality, image_size=size, window=spec.patches.window_px, stride=spec.patches.stride_px,
                            held_out_share=share, log=log)
    return {"dataset": dataset, "label_key": key, "checkpoint_id": ckpt["checkpoint_id"], **figures}


def run(project, args, log) -> dict:
    return bench_typicality(project, args.dataset, args.label, args.images, log)
