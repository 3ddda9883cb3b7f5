"""The dataset's quality figures as a table: what `diffmine eval` prints,
kept per checkpoint so runs compare in SQL over time."""

from functools import partial
from typing import Literal

from dagster import AssetDep, AssetExecutionContext, Config, MetadataValue, Output, asset
from pydantic import Field

from ..mining.evaluation.figures import StoredResults, evaluate, evaluation_table
from ..partitions import asset_key, dataset_of_label, dataset_partitions, identifier, REPORT_JOB
from ..resources import DiffmineResource
from ..storage.lake import Lake
from .common import GPU_STEP_TAGS, TORCH_POOL, code_version, in_job, read_labels, rounded

# what a dataset-wide summary reads: every label's results, and the dataset's own tables
LABEL_INPUTS = ("clusters", "cluster_members", "patch_typicality", "image_typicality", "label_matrix")
DATASET_INPUTS = ("images", "checkpoint", "ground_truth_boxes")


def input_deps(ds: str) -> list[AssetDep]:
    """Every table a dataset-wide summary reads: its labels' results and its own tables."""
    return [AssetDep(asset_key(ds, name), partition_mapping=dataset_of_label) for name in LABEL_INPUTS] + [AssetDep(asset_key(ds, name)) for name in DATASET_INPUTS]


def stored_results(lake: Lake, dataset: str) -> StoredResults:
    """The dataset's tables as the graph stored them, every label's rows of
    the per-label ones (the box-scored ones only where there are boxes)."""
    images = lake.read_partition("images", dataset)
    keys = sorted(images["label_key"].unique().to_list())
    read = partial(read_labels, lake, dataset=dataset, keys=keys)
    boxes = lake.read_partition_or_none("ground_truth_boxes", dataset)
    boxed = boxes is not None
    checkpoint = lake.read_partition_or_none("checkpoint", dataset)
    return StoredResults(
        images=images, checkpoint=checkpoint.row(0, named=True) if checkpoint is not None else None, typicality=read("image_typicality"),
        label_matrix=read("label_matrix"), boxes=boxes, patches=read("patch_typicality") if boxed else None,
        members=read("cluster_members") if boxed else None, baseline=read("baseline_patches") if boxed else None, translations=read("translations"),
        clusters=read("clusters"),
    )


def stored_figures(instance, dataset: str) -> dict | None:
    """The figures of the dataset's latest `evaluation` materialization (None before the first)."""
    event = instance.get_latest_materialization_event(asset_key(dataset, "evaluation"))
    stored = event.asset_materialization.metadata.get("figures") if event and event.asset_materialization else None
    return stored.value if stored is not None else None


def evaluate_stored(lake: Lake, dataset: str, spec, control: str = "none", curve: bool = False, curve_images: int = 32, log=print) -> tuple[dict, object]:
    """Every figure of the dataset's stored results (mining/evaluation/figures.py),
    its controls and pictures kept under the dataset's files; and the
    dataset's spec with the options those results were made with (what the
    controls were made with: mining/evaluation/as_made.py)."""
    stored = stored_results(lake, dataset)
    made = stored.made_spec(spec, log)
    return evaluate(dataset, stored, made, partial(lake.files_dir, dataset), control=control, curve=curve, curve_images=curve_images, log=log), made


class EvaluationRunConfig(Config):
    control: Literal["none", "shuffled", "untrained"] = Field(
        "none", description="the control scored beside the model (diffmine eval sets shuffled: trained once on shuffled labels, then kept)")
    curve: bool = Field(False, description="also score localisation along training, from the snapshots the checkpoint (and the control) kept")
    curve_images: int = Field(32, ge=1, description="boxed images per label scored at each step of the curve")


def build_evaluation_assets(spec):
    ds = spec.name

    @asset(
        key=asset_key(ds, "evaluation"),
        code_version=code_version("evaluation"),
        partitions_def=dataset_partitions(ds),
        deps=[*input_deps(ds), AssetDep(asset_key(ds, "translations"), partition_mapping=dataset_of_label),
              AssetDep(asset_key(ds, "baseline_patches"), partition_mapping=dataset_of_label)],
        io_manager_key="lake_io",
        metadata={"lake/keep_by": "checkpoint_id"},
        group_name=identifier(ds),
        tags=in_job(REPORT_JOB, "report"),
        pool=TORCH_POOL, op_tags=GPU_STEP_TAGS,  # scoring a control model drives torch
        kinds={"parquet"},
        description="Every quality figure of the dataset's results, one row per (label, metric): value, chance level, the "
        "control's value (when scored), the checkpoint and parameters. Held-out accuracy for every dataset; hit rates, pixel AP "
        "and cluster figures where the dataset has ground truth, and the translations' figures beside plain regeneration. One file per checkpoint, kept.",
    )
    def evaluation(context: AssetExecutionContext, config: EvaluationRunConfig, diffmine: DiffmineResource):
        lake, spec = diffmine.lake, diffmine.dataset(ds)
        figures, made = evaluate_stored(lake, ds, spec, config.control, config.curve, config.curve_images, log=context.log.info)
        table = evaluation_table(figures, made)  # the options the figures were made with, the config's or not
        shown = {k: v for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return Output(table, metadata=rounded({"figures": MetadataValue.json(figures), "rows": len(table), "control": config.control, **shown}))

    return [evaluation]
