"""The Definitions of diffmine: one set per declared dataset
(`dataset_definitions`: its assets, checks and jobs, keys `<dataset>/<asset>`),
merged with what the datasets share (the new-label sensor, the resources and
the executor of the deployment), from the project configuration
(diffmine.yaml, or $DIFFMINE_CONFIG).

Adding an asset is one place: its stage's module under assets/, which tags
it with the job it runs in; the jobs are made here from those tags.
"""

from __future__ import annotations

from pathlib import Path

from dagster import AssetSelection, Definitions, EnvVar, define_asset_job

from .assets.baseline import build_baseline_assets
from .assets.checks import build_checks
from .assets.common import JOB_TAG, TORCH_POOL
from .assets.elements import build_element_assets
from .assets.evaluation import build_evaluation_assets
from .assets.ingest import build_ingest_assets
from .assets.model import build_model_assets
from .assets.report import build_report_assets
from .assets.translation import build_translation_assets
from .assets.typicality import build_typicality_assets
from .deployment import deployment_name, executor_for, run_queue_tags
from .mining.config.project import LAKE_ENV, default_config_path, load_config
from .partitions import BASELINE_JOB, DATASET_JOB, LABEL_JOB, REPORT_JOB, job_name
from .resources import DiffmineResource, LakeIOManager
from .sensors import build_new_label_sensor

# every stage of METHOD.md, in the order of the graph: spec -> its assets
STAGES = (build_ingest_assets, build_model_assets, build_typicality_assets, build_element_assets, build_translation_assets,
          build_evaluation_assets, build_report_assets, build_baseline_assets)
JOBS = {
    DATASET_JOB: "everything partitioned by dataset alone: images, ground truth, checkpoint.",
    LABEL_JOB: "everything partitioned by dataset x label: typicality, patches, features, clusters, translations.",
    REPORT_JOB: "everything read across labels: parallel mining of the translations, the HTML report, the evaluation table.",
    BASELINE_JOB: "the correspondence baseline's patches, per label (diffmine eval runs it to compare).",
}


def _job(ds: str, kind: str, assets) -> object:
    """The dataset's job of `kind`: the assets tagged with it. On a cluster
    its runs go to the `gpu` Celery queue when one of them drives torch."""
    keys = [key for a in assets for key, tags in a.tags_by_key.items() if tags.get(JOB_TAG) == kind]
    members = [a for a in assets if any(k in keys for k in a.keys)]
    torch = any(getattr(a.node_def, "pool", None) == TORCH_POOL for a in members)
    return define_asset_job(job_name(ds, kind), selection=AssetSelection.assets(*keys), tags=run_queue_tags(torch), description=f"{ds}: {JOBS[kind]}")


def dataset_definitions(spec) -> Definitions:
    """One dataset's assets, asset checks and jobs."""
    assets = [a for stage in STAGES for a in stage(spec)]
    return Definitions(assets=assets, asset_checks=build_checks(spec), jobs=[_job(spec.name, kind, assets) for kind in JOBS])


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
    per_dataset = [dataset_definitions(spec) for spec in project.datasets]
    # the sensor requests ingestion and label runs of every dataset
    watched = [j for d in per_dataset for j in d.jobs if j.name.endswith(DATASET_JOB) or j.name.endswith(LABEL_JOB)]
    shared = Definitions(sensors=[build_new_label_sensor(watched)], resources=resources_by_deployment_name(path, project)[deployment],
                         executor=executor_for(deployment))
    return Definitions.merge(*per_dataset, shared)


defs = build_definitions()
