"""`diffmine bench WHAT`: every benchmark by name, and its flags.

Each benchmark is a module of this folder with `run(project, args, log)`,
which reads the flags it needs and returns its figures. Modules are imported
only when their benchmark runs (they load torch), so the command line starts
fast. A new benchmark is a module and a line in BENCHES (and its flags below,
when it has its own).
"""

from __future__ import annotations

import importlib

# name -> (module, what it measures)
BENCHES = {
    "typicality": ("typicality", "the engine against the published loop"),
    "training": ("training", "how well a training recipe learns the labels (held-out accuracy, label gain, and against boxes)"),
    "scaling": ("scaling", "diffmine against the correspondence baseline at growing numbers of images"),
    "ingest": ("ingest", "files/s and peak memory of ingesting a generated manifest of --rows tiny images"),
    "sd": ("sd", "the stable-diffusion backend's finetuning steps/s and typicality images/s, engine against the published loop"),
}


def add_parser(sub):
    """The `bench` command and its flags."""
    b = sub.add_parser("bench", help="benchmarks")
    b.add_argument("what", choices=list(BENCHES), help="; ".join(f"{name}: {what}" for name, (_module, what) in BENCHES.items()))
    b.add_argument("--dataset", default="builtin")
    b.add_argument("--set", action="append", help="training, scaling: SECTION.FIELD=VALUE over the dataset's options (YAML value); repeatable")
    b.add_argument("--sizes", default="100,200,400,800,1600", help="scaling: numbers of images (a built-in dataset, generated at each size)")
    b.add_argument("--seeds", default="0", help="training: comma-separated training seeds (default 0)")
    b.add_argument("--data-seed", type=int, help="training: the built-in dataset's generation seed")
    b.add_argument("--control", choices=["shuffled", "none"], default="none", help="training: also train the shuffled-label control")
    b.add_argument("--curve", metavar="MINUTES", help="training: quality against training time, one run trained to each of these minutes "
                   "(comma-separated, e.g. 2,5,10,20,40,80), a table and a chart")
    b.add_argument("--label", help="label text or key (default: the first)")
    b.add_argument("--rows", type=int, default=100_000, help="ingest: rows of the generated manifest of tiny images")
    b.add_argument("--work", help="ingest, sd: folder of the generated images or pipeline (kept; default: under the lake)")
    b.add_argument("--shape", choices=["sd15", "tiny"], default="sd15", help="sd: a random pipeline of Stable Diffusion 1.5's shapes, or a tiny one")
    b.add_argument("--resolution", type=int, default=512, help="sd: image side")
    b.add_argument("--precisions", default="float16,bfloat16", help="sd: comma-separated (float16 needs a GPU)")
    b.add_argument("--lora-rank", type=int, help="sd: finetune LoRA adapters of this rank instead of the whole UNet (0; --graph: 16, the whole UNet probed too)")
    b.add_argument("--images", type=int, default=32, help="how many of the label's images")
    g = b.add_argument_group("sd --graph", "the whole graph on a random pipeline of --shape at --resolution, per-stage seconds, peak memory and stored bytes, "
                             "then each unit of work per batch size in a fresh process (docs/STABLE_DIFFUSION.md)")
    g.add_argument("--graph", action="store_true", help="sd: materialize the whole graph instead of timing the engine alone")
    g.add_argument("--labels", type=int, default=2, help="sd --graph: labels (photo-shapes' first shapes)")
    g.add_argument("--per-label", type=int, default=4, help="sd --graph: images per label")
    g.add_argument("--steps", type=int, default=4, help="sd --graph: finetuning steps")
    g.add_argument("--batch", type=int, default=2, help="sd --graph: finetuning batch (typicality and translation batches are twice it)")
    g.add_argument("--n-samples", type=int, default=4, help="sd --graph: typicality's N")
    g.add_argument("--translation-steps", type=int, default=10, help="sd --graph: DDIM steps of a translation")
    g.add_argument("--probe-batches", default="1,2,4", help="sd --graph: batch sizes of the per-unit probes")
    g.add_argument("--force", action="store_true", help="sd --graph: materialize again what is up to date")
    return b


def run(project, args, log) -> dict:
    """The figures of benchmark `args.what`."""
    module = importlib.import_module(f".{BENCHES[args.what][0]}", __package__)
    return module.run(project, args, log)
