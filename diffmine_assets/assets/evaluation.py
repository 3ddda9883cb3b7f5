"""The dataset's quality figures as a table: what `diffmine eval` prints,
kept per checkpoint so runs compare in SQL over time."""

from typing import Literal

from dagster import AssetDep, AssetExecutionContext, Config, MetadataValue, Output, asset
from pydantic import Field

from ..evaluate import evaluate, evaluation_table
from ..partitions import asset_key, dataset_of_label, dataset_partitions
from ..resources import DiffmineResource
from .model import GPU_STEP_TAGS, TORCH_POOL
from .report import input_deps
from .versions import code_versions


class EvaluationRunConfig(Config):
    control: Literal["none", "shuffled", "untrained"] = Field(
        "none", description="the control scored beside the model (diffmine eval sets shuffled: trained once on shuffled labels, then kept)")
    curve: bool = Field(False, description="also score localisation along training, from the snapshots the checkpoint (and the control) kept")
    curve_images: int = Field(32, ge=1, description="boxed images per label scored at each step of the curve")


def build_evaluation_asset(spec):
    ds = spec.name

    @asset(
        key=asset_key(ds, "evaluation"),
        code_version=code_versions(spec)["evaluation"],
        partitions_def=dataset_partitions(ds),
        deps=[*input_deps(ds), AssetDep(asset_key(ds, "translations"), partition_mapping=dataset_of_label),
              AssetDep(asset_key(ds, "baseline_patches"), partition_mapping=dataset_of_label)],
        io_manager_key="lake_io",
        metadata={"lake/keep_by": "checkpoint_id"},
        group_name="report",
        pool=TORCH_POOL, op_tags=GPU_STEP_TAGS,  # scoring a control model drives torch
        kinds={"parquet"},
        description="Every quality figure of the dataset's results, one row per (label, metric): value, chance level, the "
        "control's value (when scored), the checkpoint and parameters. Held-out accuracy for every dataset; hit rates, pixel AP "
        "and cluster figures where the dataset has ground truth, and the translations' figures beside plain regeneration. One file per checkpoint, kept.",
    )
    def evaluation(context: AssetExecutionContext, config: EvaluationRunConfig, diffmine: DiffmineResource):
        figures = evaluate(diffmine.project, ds, control=config.control, curve=config.curve, curve_images=config.curve_images, log=context.log.info)
        table = evaluation_table(figures, diffmine.dataset(ds))
        shown = {k: v for k, v in figures.items() if not isinstance(v, dict)}
        return Output(table, metadata={"figures": MetadataValue.json(figures), "rows": len(table), "control": config.control,
                                       **{k: v for k, v in shown.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}})

    return evaluation
