"""`diffmine`: run the graph, query the catalog.

Every command that reports figures ends its output with one line of JSON.
Runs go through the project's Dagster instance (DAGSTER_HOME), so they show
in the UI exactly like runs launched there.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import duckdb

from .bench import commands as bench
from .mining.config.options import parse_duration
from .mining.config.project import ConfigError, default_config_path, load_config
from .instance import open_instance, project_home, write_settings
from .progress import terminal_progress
from .storage.catalog import Catalog
from .storage.lake import Lake, LakeError

# Dagster, the runner and torch (several seconds to import) are imported
# inside the commands that use them, so `diffmine sql` and `--help` start in
# about a second.


def _emit(figures: dict) -> None:
    print(json.dumps(figures, default=str), flush=True)


def _config_path(args) -> Path:
    return Path(args.config).resolve() if args.config else default_config_path()


# -- materialize ---------------------------------------------------------------------------


def materialize(config_path: Path, dataset: str, labels: list[str] | None = None, select: list[str] | None = None, log=print, budget_s: float | None = None,
                force: bool = False, verbose: bool = False) -> dict:
    """Materialize what is missing or stale of the selected assets (default:
    all) of one dataset, its per-dataset assets first, then each label's
    partition; everything with `force`. Returns figures."""
    from .runner import run_dataset  # see the note on imports above

    instance = open_instance(config_path)
    with terminal_progress(enabled=not verbose):
        return run_dataset(instance, config_path, dataset, labels=labels, select=select, log=log, budget_s=budget_s, force=force, verbose=verbose)


def cmd_materialize(args) -> int:
    try:
        budget = parse_duration(args.budget) if args.budget is not None else None
        if budget is not None and budget <= 0:
            raise ValueError(f"{args.budget!r} leaves no time: a budget is more than 0 s (examples: 90s, 10m, 1.5h)")
    except ValueError as exc:
        print(f"diffmine: --budget: {exc}", file=sys.stderr)
        return 2
    figures = materialize(_config_path(args), args.dataset, args.label, args.select, budget_s=budget, force=args.force, verbose=args.verbose)
    _emit(figures)
    return 0 if figures["failed_runs"] == 0 else 1


def cmd_demo(args) -> int:
    config_path = _config_path(args)
    project = load_config(config_path)
    dataset = args.dataset or project.dataset_names[0]
    t0 = time.monotonic()
    figures = materialize(config_path, dataset, force=args.force, verbose=args.verbose)
    catalog = Catalog(project.catalog, Lake(project.lake))
    tables = catalog.views()
    with catalog.reader() as con:
        if "image_typicality" in tables:
            per_label = con.execute(
                """select i.label, count(*) as images, avg(t.typicality) as mean_typicality
                   from images i left join image_typicality t using (dataset, image_id)
                   where i.dataset = $d group by i.label order by i.label""",
                {"d": dataset},
            ).fetchall()
        else:
            per_label = con.execute(
                "select label, count(*), null from images where dataset = $d group by label order by label", {"d": dataset}
            ).fetchall()
    print()
    print(f"diffmine demo: dataset {dataset!r} materialized in {time.monotonic() - t0:.0f} s")
    for label, n, typ in per_label:
        print(f"  {label:<24} {n:>6} images" + (f"   mean typicality {typ:+.5f}" if typ is not None else ""))
    print(f"tables:  {', '.join(sorted(tables))}")
    if figures.get("report"):
        print(f"report:  {figures['report']}   (open it in a browser)")
    print(f"lake:    {project.lake}")
    print(f"catalog: {project.catalog}")
    print("query:   diffmine sql \"select label, image_id, x0, y0, x1, y1, typicality from patch_typicality")
    print("                       where selection = 'top' and rank_in_label <= 3 order by label, rank_in_label\"")
    print("score:   diffmine eval --dataset builtin      (typicality against the planted elements)")
    print("UI:      diffmine ui   (then open http://127.0.0.1:3000)")
    figures["images_per_label"] = {label: n for label, n, _ in per_label}
    _emit(figures)
    return 0 if figures["failed_runs"] == 0 else 1


# -- sql -----------------------------------------------------------------------------------


class _TableWriter:
    """Aligned columns, streamed: widths come from the header and the first
    batch (a later, longer cell widens only its own line)."""

    def __init__(self, out, columns: list[str]):
        self.out, self.columns, self.widths = out, columns, None

    def write(self, rows: list[tuple]) -> None:
        cells = [[("NULL" if v is None else str(v)) for v in r] for r in rows]
        if self.widths is None:
            self.widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)]
            self._line(self.columns)
            self._line(["-" * w for w in self.widths])
        for r in cells:
            self._line(r)

    def _line(self, values) -> None:
        self.out.write("  ".join(v.ljust(w) for v, w in zip(values, self.widths)).rstrip() + "\n")


def _parse_params(items: list[str] | None) -> dict:
    params = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--param wants NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        params[k] = v
    return params


def _write_result(out, fmt: str, columns: list[str], batches) -> int:
    """Write the batches as they come (any size in bounded memory); returns the row count."""
    n = 0
    if fmt == "csv":
        w = csv.writer(out)
        w.writerow(columns)
        for batch in batches:
            w.writerows(batch)
            n += len(batch)
    elif fmt == "json":
        out.write("[")
        for batch in batches:
            for row in batch:
                out.write(("," if n else "") + "\n" + json.dumps(dict(zip(columns, row)), default=str))
                n += 1
        out.write("\n]\n")
    else:
        table = _TableWriter(out, columns)
        for batch in batches:
            table.write(batch)
            n += len(batch)
        if table.widths is None:
            table.write([])
    return n


def cmd_sql(args) -> int:
    t0 = time.monotonic()
    project = load_config(_config_path(args))
    catalog = Catalog(project.catalog, Lake(project.lake))
    try:
        with catalog.stream(args.query, _parse_params(args.param)) as (columns, batches):
            rows = _write_result(sys.stdout, args.format, columns, batches)
            if args.format == "table":
                _emit({"rows": rows, "seconds": round(time.monotonic() - t0, 3)})
            sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (| head): stop quietly; stdout is pointed at
        # /dev/null so the interpreter's last flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (duckdb.Error, FileNotFoundError) as exc:
        print(f"diffmine sql: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_catalog(args) -> int:
    project = load_config(_config_path(args))
    catalog = Catalog(project.catalog, Lake(project.lake))
    created = catalog.ensure_views()
    views = sorted(catalog.views()) if project.catalog.exists() else []
    for v in views:
        print(v)
    _emit({"views": views, "created": created})
    return 0


def cmd_eval(args) -> int:
    project = load_config(_config_path(args))
    control = "none" if args.no_control else args.control
    if args.seeds:
        from .bench.seeds import evaluate_seeds  # see the note on imports above
        from .mining.evaluation.goals import TRANSLATION_METRICS

        figures = evaluate_seeds(project, args.dataset, args.seeds, control=control)
        print(f"{'figure':28s} {'mean':>8s} {'sd':>8s}   {'chance':>8s}   {control:>8s}")
        for k, v in figures["mean"].items():
            if v is None or k.endswith("_images") or k == "accuracy_chance":
                continue
            ch = (figures["chance"].get(k) or {}).get("mean")
            source = "translation_control" if k in TRANSLATION_METRICS else "control"
            ct = (figures.get(source, {}).get(k) or {}) if control != "none" else {}
            fmt = lambda x: f"{x:8.4f}" if isinstance(x, (int, float)) else f"{'':8s}"  # noqa: E731
            print(f"{k:28s} {fmt(v['mean'])} {fmt(v['sd'])}   {fmt(ch)}   {fmt(ct.get('mean') if isinstance(ct, dict) else None)}")
        print(f"over {len(figures['seeds'])} runs (data seed, model seed): {figures['seeds']}; sd is the sample standard deviation (n - 1); "
              f"the translations' control column is plain regeneration")
        print(f"{'paired difference':44s} {'mean':>8s}   95 % t-interval over the runs")
        for name, gap in figures["gaps"].items():
            interval = f"[{gap['low']:+.4f}, {gap['high']:+.4f}]" if gap.get("low") is not None else "(no interval)"
            print(f"{name:44s} {gap['difference']:+8.4f}   {interval}")
        goals = figures["goals_met_on_means"]
        print(f"goals met on the means: {sum(goals.values())} of {len(goals)}; in each run: "
              + ", ".join(f"{k} {v}" for k, v in figures["goals_met_in_runs"].items()))
        _emit({k: v for k, v in figures.items() if k != "runs"})
        return 0
    # stored as the dataset's `evaluation` asset (kept per checkpoint), then printed
    from .runner import evaluate_dataset, run_dataset  # see the note on imports above

    config_path = _config_path(args)
    instance = open_instance(config_path)
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    if Lake(project.lake).has_partition("ground_truth_boxes", args.dataset) and not args.no_baseline:
        # the correspondence baseline on the same images, so every hit rate is compared (kept while up to date)
        base = run_dataset(instance, config_path, args.dataset, select=["baseline_patches"], log=log)
        if base["failed_runs"]:
            print(f"diffmine eval: the baseline's run failed (run {base['run_ids'][-1][:8]}; see above, or the UI)", file=sys.stderr)
            return 1
    run, figures = evaluate_dataset(instance, config_path, args.dataset, control, curve=args.curve, log=log)
    if figures is None:
        print(f"diffmine eval: the evaluation run failed (run {run['run_ids'][-1][:8]}; see above, or the UI)", file=sys.stderr)
        return 1
    from .mining.evaluation.verdicts import verdict_lines  # see the note on imports above

    print(f"{args.dataset}: checkpoint {figures['checkpoint_id']}, {figures['labels']} labels, {figures['images']} images")
    for line in verdict_lines(figures):
        print(line)
    if run.get("report_rendered"):
        print(f"report:  {run['report']}   (rendered again with these figures)")
    _emit(figures)
    return 0


def cmd_translate(args) -> int:
    from .mining.training.checkpoints import load_checkpoint  # see the note on imports above
    from .mining.translation.tables import find_image, translate_one

    project = load_config(_config_path(args))
    spec = project.dataset(args.dataset)
    lake = Lake(project.lake)
    try:
        images = lake.read_partition("images", args.dataset)
        ckpt = lake.read_partition("checkpoint", args.dataset).row(0, named=True)
    except LakeError:
        print(f"diffmine translate: dataset {args.dataset!r} has no checkpoint yet; run diffmine materialize --dataset {args.dataset}", file=sys.stderr)
        return 1
    try:
        row = find_image(images, args.image)
    except ValueError as exc:
        print(f"diffmine translate: {exc}", file=sys.stderr)
        return 2
    by_name = {**dict(zip(images["label"], images["label_key"])), **{k: k for k in images["label_key"]}}
    if args.to not in by_name:
        print(f"diffmine translate: dataset {args.dataset!r} has no label {args.to!r}; labels are {sorted(set(images['label']))}", file=sys.stderr)
        return 2
    target = by_name[args.to]
    model = load_checkpoint(ckpt["path"])
    out = Path(args.out) if args.out else Path.cwd() / f"{Path(row['relpath']).stem}-to-{target}.png"
    figures = translate_one(model, row, target, spec.translation, spec.typicality, out, method=args.method)
    print(f"{row['relpath']} ({row['label']}) -> {args.to}: {out}  (typicality under {args.to} {figures['typicality_target']:+.5f}, "
          f"under {row['label']} {figures['typicality_source']:+.5f}; {figures['seconds']:.1f} s)", file=sys.stderr)
    _emit({"checkpoint_id": ckpt["checkpoint_id"], **figures})
    return 0


def cmd_bench(args) -> int:
    _emit(bench.run(load_config(_config_path(args)), args, log=lambda line: print(line, file=sys.stderr)))
    return 0


def cmd_ui(args) -> int:
    from .ui import serve  # the server's modules load only for this command

    config_path = _config_path(args)
    home = project_home(config_path)
    write_settings(home)
    return serve(config_path, home, args.port, args.grace)


def _run_flags(p) -> None:
    p.add_argument("--force", action="store_true", help="rerun every selected asset, up to date or not (the checkpoint trains again)")
    p.add_argument("--verbose", action="store_true", help="print Dagster's full event log (otherwise one line per run; the events are in the UI)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="diffmine", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="project configuration (default: $DIFFMINE_CONFIG or ./diffmine.yaml)")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="materialize the whole graph for the built-in dataset")
    d.add_argument("--dataset", help="another declared dataset instead of the first one")
    _run_flags(d)
    d.set_defaults(fn=cmd_demo)

    m = sub.add_parser("materialize", help="materialize assets of one dataset")
    m.add_argument("--dataset", required=True)
    m.add_argument("--label", action="append", help="label text or key; repeat for several (default: all)")
    m.add_argument("--select", action="append", help="asset name; repeat for several (default: all)")
    m.add_argument("--budget", help="time the whole run may take (90s, 10m, 1.5h): training is sized to what the estimate leaves")
    _run_flags(m)
    m.set_defaults(fn=cmd_materialize)

    s = sub.add_parser("sql", help="read-only SQL on the catalog")
    s.add_argument("query")
    s.add_argument("--format", choices=["table", "csv", "json"], default="table")
    s.add_argument("--param", action="append", help="NAME=VALUE, bound to $NAME in the query; repeatable")
    s.set_defaults(fn=cmd_sql)

    c = sub.add_parser("catalog", help="(re)create the catalog's views over every lake table")
    c.set_defaults(fn=cmd_catalog)

    e = sub.add_parser("eval", help="quality figures of a dataset's results: held-out accuracy, and against ground truth where it has some")
    e.add_argument("--dataset", default="builtin")
    e.add_argument("--control", choices=["shuffled", "untrained", "none"], default="shuffled",
                   help="the control scored beside the model: trained the same way on shuffled labels (default), never trained, or none")
    e.add_argument("--no-control", action="store_true", help="same as --control none")
    e.add_argument("--no-baseline", action="store_true", help="do not run the correspondence baseline (run by default where the dataset has ground-truth boxes)")
    e.add_argument("--seeds", type=int, help="materialize the dataset again on N seeds (a built-in dataset: new data seeds its defaults were not "
                   "tuned on, and new model seeds; others: new model seeds), each in a project of its own, and print mean and spread")
    e.add_argument("--curve", action="store_true", help="also score localisation (per-label AP of the maps against the boxes) at every snapshot "
                   "the training kept (training.snapshots, default 5 and the start), for the model and the shuffled control; a table and a chart in the report")
    e.set_defaults(fn=cmd_eval)

    t = sub.add_parser("translate", help="translate one image into another label (the dataset's checkpoint and translation options)")
    t.add_argument("--dataset", required=True)
    t.add_argument("--image", required=True, help="the image's relpath as in the images table (or its image_id)")
    t.add_argument("--to", required=True, help="target label (text or key)")
    t.add_argument("--out", help="PNG to write (default: ./<image>-to-<label>.png)")
    t.add_argument("--method", choices=["masked", "masked-pnp", "pnp", "regenerate"],
                   help="override translation.method: inside the edit mask (masked, masked-pnp), with injection (pnp), or plain regeneration")
    t.set_defaults(fn=cmd_translate)

    bench.add_parser(sub).set_defaults(fn=cmd_bench)

    u = sub.add_parser("ui", help="start the Dagster UI on 127.0.0.1")
    u.add_argument("--port", type=int, default=3000)
    u.add_argument("--grace", type=float, default=30.0, help="seconds the server gets to stop on Ctrl-C or SIGTERM before it is killed")
    u.set_defaults(fn=cmd_ui)

    args = p.parse_args(_attach_values(sys.argv[1:] if argv is None else argv))
    try:
        return args.fn(args)
    except ConfigError as exc:  # a mistake in the config or the command line (unknown dataset, label, asset)
        if getattr(args, "verbose", False):
            raise
        print(f"diffmine: {exc}", file=sys.stderr)
        return 2


def _attach_values(argv: list[str]) -> list[str]:
    """`--budget -5s` as `--budget=-5s`: argparse takes a value that starts
    with '-' for an option and would answer "expected one argument"; this way
    the budget's own check says what is wrong with it."""
    out = list(argv)
    for i in range(len(out) - 1):
        if out[i] == "--budget" and out[i + 1].startswith("-"):
            out[i : i + 2] = [f"--budget={out[i + 1]}"]
            break
    return out


if __name__ == "__main__":
    sys.exit(main())
