"""The Definitions of diffmine: assets, resources and jobs, built from the
project configuration (diffmine.yaml, or $DIFFMINE_CONFIG).

Each declared dataset gets its own assets (keys `<dataset>/<asset>`) and its
own three jobs, so its label partitions are its own (partitions.py)."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetSelection, Definitions, EnvVar, define_asset_job

from .assets.baseline import build_baseline_assets
from .assets.checks import build_checks
from .assets.elements import build_element_assets
from .assets.evaluation import build_evaluation_asset
from .assets.ingest import build_ingest_assets
from .assets.model import TORCH_POOL, build_model_assets
from .assets.report import build_report_asset
from .assets.translation import build_translation_assets
from .assets.typicality import build_typicality_assets
from .deployment import LAKE_ENV, deployment_name, executor_for, run_queue_tags
from .mining.datasets.spec import default_config_path, load_config
from .partitions import BASELINE_JOB, DATASET_JOB, LABEL_JOB, REPORT_JOB, job_name
from .resources import DiffmineResource, LakeIOManager
from .sensors import build_new_label_sensor


def _queue(assets) -> dict[str, str]:
    """The Celery queue of the job's runs on a cluster: `gpu` when one of
    its assets drives torch (pool `torch`), else `cpu`."""
    return run_queue_tags(any(getattr(a.node_def, "pool", None) == TORCH_POOL for a in assets))


def resources_by_deployment_name(path: Path, project) -> dict[str, dict]:
    """Dagster's fully-featured-project pattern: one resource set per
    deployment, picked by DIFFMINE_DEPLOYMENT. Remote deployments name their
    lake by environment variable (shown, not resolved, in the UI) and keep no
    catalog file."""
    diffmine = DiffmineResource(config_path=str(path))
    shared = {"diffmine": diffmine, "lake_io": LakeIOManager(lake_root=EnvVar(LAKE_ENV), catalog_path="")}
    return {
        "local": {"diffmine": diffmine, "lake_io": LakeIOManager(lake_root=str(project.lake), catalog_path=str(project.catalog))},
        "cluster": shared,
        "kubernetes": shared,
    }


def build_definitions(config_path: str | Path | None = None) -> Definitions:
    path = Path(config_path).resolve() if config_path else default_config_path()
    project = load_config(path)
    deployment = deployment_name()
    assets, jobs, asset_checks = [], [], []
    for spec in project.datasets:
        ds = spec.name
        dataset_assets = [*build_ingest_assets(spec), *build_model_assets(spec)]
        translations, parallel = build_translation_assets(spec)
        label_assets = [*build_typicality_assets(spec), *build_element_assets(spec), *translations]
        report = build_report_asset(spec)
        evaluation = build_evaluation_asset(spec)
        baseline = build_baseline_assets(spec)
        assets += [*dataset_assets, *label_assets, *parallel, report, evaluation, baseline]
        asset_checks += build_checks(spec)
        jobs += [
            define_asset_job(job_name(ds, DATASET_JOB), selection=AssetSelection.assets(*dataset_assets), tags=_queue(dataset_assets),
                             description=f"{ds}: everything partitioned by dataset alone: images, ground truth, checkpoint."),
            define_asset_job(job_name(ds, LABEL_JOB), selection=AssetSelection.assets(*label_assets), tags=_queue(label_assets),
                             description=f"{ds}: everything partitioned by dataset x label: typicality, patches, features, clusters, translations."),
            define_asset_job(job_name(ds, REPORT_JOB), selection=AssetSelection.assets(*parallel, report, evaluation), tags=_queue([*parallel, report, evaluation]),
                             description=f"{ds}: everything read across labels: parallel mining of the translations, the HTML report, the evaluation table."),
            define_asset_job(job_name(ds, BASELINE_JOB), selection=AssetSelection.assets(baseline), tags=_queue([baseline]),
                             description=f"{ds}: the correspondence baseline's patches, per label (diffmine eval runs it to compare)."),
        ]
    return Definitions(
        assets=assets,
        asset_checks=asset_checks,
        jobs=jobs,
        sensors=[build_new_label_sensor([j for j in jobs if j.name.endswith(DATASET_JOB) or j.name.endswith(LABEL_JOB)])],
        resources=resources_by_deployment_name(path, project)[deployment],
        executor=executor_for(deployment),
    )


defs = build_definitions()
