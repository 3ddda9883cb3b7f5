"""The dataset's denoiser checkpoint and its training curve."""

from dataclasses import asdict
from typing import Optional

import polars as pl
from dagster import AssetExecutionContext, AssetIn, AssetOut, Config, DataVersion, Failure, MetadataValue, Output, multi_asset
from pydantic import Field

from ..mining.datasets.ingest import data_version as compute_data_version
from ..mining.report.visuals import label_gain_chart, loss_chart, training_evidence_chart
from ..mining.training.checkpoints import FittedCheckpoint, continuation_base, fit, published_check, up_to_date
from ..mining.training.diagnostics import describe_gain
from ..mining.training.estimate import estimate_run
from ..mining.training.loop import TrainingDiverged
from ..mining.training.stopping import FALLBACK_EPOCHS, checks_from, reads_evidence
from ..partitions import DATASET_JOB, asset_key, dataset_partitions, identifier
from ..progress import eta, report
from ..resources import DiffmineResource
from ..usage import StepUsage
from .common import GPU_STEP_TAGS, TORCH_POOL, code_version, in_job, picture, records_table, rounded


class TrainingRunConfig(Config):
    """Run-time settings of one training run (not of the dataset)."""

    time_budget_s: Optional[float] = Field(None, gt=0, description="seconds the training may take; fewer steps if needed (set by diffmine materialize --budget)")
    retrain: bool = Field(False, description="train again even when the last checkpoint was trained on the same data with the same options (set by diffmine materialize --force)")


def _progress(context):
    def progress(row):
        if "label_gain" in row:
            context.log.info(f"step {row['step']}: quick held-out accuracy {row['quick_accuracy']:.2f}; label gain by timestep band " + describe_gain(row["label_gain"]))
            return
        report("training", row["step"], row["total_steps"], f"loss {row['loss']:.4f}  {row['images_per_s']:.0f} images/s  ETA {eta(row['eta_s'])}")
        context.log.info(f"step {row['step']}/{row['total_steps']}  loss {row['loss']:.4f}  val {row['val_loss']:.4f}  "
                         f"{row['images_per_s']:.0f} images/s  ETA {row['eta_s']:.0f} s")

    return progress


def _metadata(name: str, fitted: FittedCheckpoint, data_version: str) -> dict:
    row = fitted.table.row(0, named=True)
    gain = published_check(fitted.result)["bands"] if fitted.result.diagnostics else []
    checks = [asdict(c) for c in checks_from(fitted.result.diagnostics, fitted.model.num_train_timesteps)]
    evidence = training_evidence_chart(checks, fitted.result.best_step, len(fitted.labels),
                                       f"{name}: held-out evidence along training")
    extra = {}
    if evidence is not None:
        extra["evidence_chart"] = picture(evidence, fitted.path / "evidence.png", "held-out accuracy and label gain along training")
        extra["checks"] = records_table(["step", "quick accuracy", "gain x 1e3"], [[c["step"], round(c["accuracy"], 3), round(c["gain"] * 1e3, 4)] for c in checks])
    return rounded({
        "checkpoint_id": fitted.checkpoint_id,
        "reused": False,
        "path": MetadataValue.path(str(fitted.path)),
        "labels": MetadataValue.json(fitted.labels),
        "steps": fitted.result.best_step,
        "trained_steps": fitted.result.steps,
        "stopped_by": fitted.result.stopped_by,
        "augmentation": fitted.result.augmentation.describe(),
        "resumed_from_step": fitted.result.resumed_from,
        "continued_from": row["continued_from"] or "none (trained from scratch)",
        "seconds": row["seconds"],
        "parameters": row["parameters"],
        "final_loss": row["final_loss"],
        "data_version_trained_on": data_version,
        "planned_steps": row["planned_steps"],
        "unbudgeted_steps": row["unbudgeted_steps"],
        "label_gain": records_table(["timesteps", "gain x 1e3", "share of null loss %"],
                                    [[f"{b['t_lo']}-{b['t_hi']}", round(b["gain"] * 1e3, 4), round(b["relative"] * 100, 3)] for b in gain]),
        "loss_curve": picture(loss_chart(fitted.log, f"{name}: denoising loss"), fitted.path / "loss_curve.png", "loss curve"),
        "label_gain_chart": picture(label_gain_chart(gain, f"{name}: held-out L(null) - L(own label) by timestep"), fitted.path / "label_gain.png",
                                    "held-out label gain by timestep"),
        **extra,
    })


def training_ceiling(spec, images: pl.DataFrame, opts, log, continuing: bool) -> float | None:
    """Seconds an evidence-length training may take when no budget is given:
    what the dataset's `run_target` leaves after the estimate of the other
    stages (estimate.evidence_ceiling). None when a budget or a fixed length
    is given, for a continuation (its continue_steps), or when too few
    training images can be spared for the checks (the fixed fallback)."""
    n_train = int((images["split"] == "train").sum())
    if not opts.by_evidence or opts.time_budget is not None or continuing:
        return None
    held = int((images["split"] == "val").sum())
    if not reads_evidence(opts.by_evidence, opts.stops_early, n_train, held):
        log(f"training: too few images to read held-out evidence from ({n_train} training, {held} held out): a fixed {FALLBACK_EPOCHS:g} epochs")
        return None
    labels = sorted(images["label_key"].unique().to_list())
    est = estimate_run(labels, len(images), held, len(images) - held, spec.options.resolution, opts, spec.typicality, translation=spec.translation)
    log(f"training: {est.training_s / 60:.1f} min" + (" at most (held-out evidence may stop it sooner)" if opts.stops_early else "") + ": "
        f"what a {opts.run_target / 60:.0f}-min run (training.run_target) leaves after the other stages' estimate of "
        f"{(est.total_s - est.training_s) / 60:.1f} min")
    return est.training_s


def build_model_assets(spec):
    ds = spec.name
    version = code_version(spec.training.version(), spec.options.resolution)
    out = dict(code_version=version, io_manager_key="lake_io", tags=in_job(DATASET_JOB, "model"))

    @multi_asset(
        name=f"{identifier(ds)}__checkpoint",
        partitions_def=dataset_partitions(ds),
        outs={
            "checkpoint": AssetOut(key=asset_key(ds, "checkpoint"), **out, kinds={"pytorch", "parquet"},
                                   description="The label-conditioned denoiser trained on the dataset: one row naming its safetensors weights, labels, steps, data version and options."),
            "training_log": AssetOut(key=asset_key(ds, "training_log"), **out, kinds={"parquet"},
                                     description="The training curve of the checkpoint: step, loss, held-out loss, images/s."),
        },
        ins={"images": AssetIn(key=asset_key(ds, "images"))},
        group_name=identifier(ds),
        pool=TORCH_POOL, op_tags=GPU_STEP_TAGS,
    )
    def checkpoint(context: AssetExecutionContext, config: TrainingRunConfig, diffmine: DiffmineResource, images: pl.DataFrame):
        usage = StepUsage()
        name, lake = context.partition_key, diffmine.lake
        spec = diffmine.dataset(name)
        data_version = compute_data_version(images)
        opts = spec.training
        if config.time_budget_s is not None:
            # a run's budget (diffmine materialize --budget) wins over the configured one
            opts = opts.model_copy(update={"time_budget": config.time_budget_s})
            context.log.info(f"training sized to a budget of {config.time_budget_s:.0f} s")
        previous_table = lake.read_partition_or_none("checkpoint", name)
        previous = previous_table.row(0, named=True) if previous_table is not None else None
        if not config.retrain and lake.has_partition("training_log", name) and up_to_date(previous, opts, spec.options.resolution, data_version):
            # Trained on exactly this data with these options: training again
            # would cost minutes for an equivalent model under a new id.
            context.log.info(f"checkpoint {previous['checkpoint_id']} is up to date (same data version, same options): reused; run with retrain: true to train again")
            version = DataVersion(previous["checkpoint_id"])
            meta = {"checkpoint_id": previous["checkpoint_id"], "reused": True, "path": MetadataValue.path(previous["path"]), "labels": MetadataValue.json(list(previous["labels"])), **usage.figures()}
            yield Output(previous_table, output_name="checkpoint", data_version=version, metadata=meta)
            yield Output(lake.read_partition("training_log", name), output_name="training_log", data_version=version, metadata={"reused": True})
            return
        continuing = continuation_base(previous, opts, spec.options.resolution, data_version, context.log.info) is not None
        ceiling = training_ceiling(spec, images, opts, context.log.info, continuing)
        try:
            fitted = fit(name, images, opts, spec.options.resolution, data_version, lake.files_dir(name, "checkpoints"), _progress(context), previous=previous,
                         ceiling_s=ceiling)
        except TrainingDiverged as exc:
            raise Failure(description=str(exc)) from None
        context.log.info(f"trained {fitted.result.steps} steps, published the weights of step {fitted.result.best_step}; stopped by {fitted.result.stopped_by}; "
                         f"augmentation: {fitted.result.augmentation.describe()}" + (f", resumed from step {fitted.result.resumed_from}" if fitted.result.resumed_from else "")
                         + (f", continued from checkpoint {fitted.table['continued_from'][0]} with labels {fitted.labels}" if fitted.table["continued_from"][0] else ""))
        # the weights' hash: downstream is stale exactly when the weights changed
        version = DataVersion(fitted.checkpoint_id)
        yield Output(fitted.table, output_name="checkpoint", data_version=version, metadata={**_metadata(name, fitted, data_version), **usage.figures()})
        yield Output(fitted.log, output_name="training_log", data_version=version, metadata={"points": len(fitted.log)})

    return [checkpoint]
