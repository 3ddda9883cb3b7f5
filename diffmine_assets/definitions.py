"""The Definitions of diffmine: assets, resources and jobs, built from the
project configuration (diffmine.yaml, or $DIFFMINE_CONFIG)."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetSelection, Definitions, define_asset_job

from .assets.ingest import build_ingest_assets
from .assets.elements import build_element_assets
from .assets.model import build_model_assets
from .assets.report import build_report_asset
from .assets.typicality import build_typicality_assets
from .mining.datasets.spec import default_config_path, load_config
from .partitions import dataset_label_partitions, dataset_partitions
from .resources import DiffmineResource, LakeIOManager
from .sensors import build_new_label_sensor

DATASET_JOB = "dataset_assets"
LABEL_JOB = "label_assets"
REPORT_JOB = "report_assets"


def build_definitions(config_path: str | Path | None = None) -> Definitions:
    path = Path(config_path).resolve() if config_path else default_config_path()
    project = load_config(path)
    per_dataset = dataset_partitions(project.dataset_names)
    per_label = dataset_label_partitions(project.dataset_names)
    dataset_assets = [*build_ingest_assets(per_dataset), *build_model_assets(per_dataset)]
    label_assets = [*build_typicality_assets(per_label), *build_element_assets(per_label)]
    report = build_report_asset(per_dataset)
    dataset_job = define_asset_job(DATASET_JOB, selection=AssetSelection.assets(*dataset_assets),
                                   description="Everything partitioned by dataset alone: images, ground truth, checkpoint.")
    label_job = define_asset_job(LABEL_JOB, selection=AssetSelection.assets(*label_assets),
                                 description="Everything partitioned by dataset x label: typicality, patches, features, clusters.")
    return Definitions(
        assets=[*dataset_assets, *label_assets, report],
        jobs=[
            dataset_job,
            label_job,
            define_asset_job(REPORT_JOB, selection=AssetSelection.assets(report), description="The HTML report of a dataset."),
        ],
        sensors=[build_new_label_sensor(dataset_job, label_job)],
        resources={
            "diffmine": DiffmineResource(config_path=str(path)),
            "lake_io": LakeIOManager(lake_root=str(project.lake), catalog_path=str(project.catalog)),
        },
    )


defs = build_definitions()
