"""The report: one HTML page per dataset, with every label's pictures."""

import json
from pathlib import Path

from dagster import AssetDep, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from ..mining.evaluation.figure_table import figure_table
from ..mining.evaluation.goals import GOALS, preset_of
from ..mining.report.page import FigureTable, LabelResults, label_section, parallel_picture, render_report
from ..mining.report.pictures import ImageCache
from ..partitions import asset_key, dataset_of_label, dataset_partitions, identifier, REPORT_JOB
from ..resources import DiffmineResource
from ..storage.lake import Lake, LakeError
from .common import code_version, in_job
from .evaluation import input_deps, stored_figures


def _label_results(lake: Lake, dataset: str, images) -> tuple[list[LabelResults], list[str]]:
    """Every mined label's tables, and the labels not mined yet."""
    found, missing = [], []
    for label, key in images.select("label", "label_key").unique().sort("label_key").iter_rows():
        try:
            tables = [lake.read_partition(t, dataset, key) for t in ("clusters", "cluster_members", "patch_typicality", "image_typicality")]
        except LakeError:  # a label not mined yet: the page says so
            missing.append(label)
            continue
        found.append(LabelResults(label, key, *tables, translations=lake.read_partition_or_none("translations", dataset, key)))
    return found, missing


def _figures(context: AssetExecutionContext, dataset: str, checkpoint_id: str) -> dict | None:
    """The evaluation's figures, when they are of the current checkpoint."""
    figures = stored_figures(context.instance, dataset)
    return figures if figures is not None and figures.get("checkpoint_id") == checkpoint_id else None


def _parallel(lake: Lake, dataset: str, checkpoint_id: str, images) -> bytes | None:
    clusters = lake.read_partition_or_none("parallel_clusters", dataset)
    if clusters is None or clusters.is_empty() or clusters["checkpoint_id"][0] != checkpoint_id:
        return None
    return parallel_picture(clusters, lake.read_partition("parallel_cluster_members", dataset), lake.read_partition("parallel_typicality", dataset), images)


def _scaling(lake: Lake, dataset: str) -> tuple[bytes, dict] | None:
    """The chart and figures of `diffmine bench scaling`, when it was run."""
    bench = lake.files_dir(dataset, "bench", "scaling")
    if (bench / "scaling.json").exists() and (bench / "scaling.png").exists():
        return (bench / "scaling.png").read_bytes(), json.loads((bench / "scaling.json").read_text())
    return None


def build_report_assets(spec):
    ds = spec.name

    @asset(
        key=asset_key(ds, "report"),
        code_version=code_version("report"),
        partitions_def=dataset_partitions(ds),
        # the figures come from the evaluation asset, computed once
        deps=[*input_deps(ds), AssetDep(asset_key(ds, "evaluation")), AssetDep(asset_key(ds, "translations"), partition_mapping=dataset_of_label),
              AssetDep(asset_key(ds, "parallel_clusters")), AssetDep(asset_key(ds, "parallel_cluster_members")), AssetDep(asset_key(ds, "parallel_typicality"))],
        group_name=identifier(ds),
        tags=in_job(REPORT_JOB, "report"),
        kinds={"html"},
        description="A self-contained HTML page per dataset: per label the cluster grid, patch strips and heatmaps; "
        "the quality figures where the dataset has ground truth; the parameters and checkpoint behind them.",
    )
    def report(context: AssetExecutionContext, diffmine: DiffmineResource):
        lake, spec = diffmine.lake, diffmine.dataset(ds)
        images = lake.read_partition("images", ds)
        ckpt = lake.read_partition("checkpoint", ds).row(0, named=True)
        labels, missing = _label_results(lake, ds, images)
        cache = ImageCache()
        sections = [label_section(r, images, cache) for r in labels]
        figures = _figures(context, ds, ckpt["checkpoint_id"]) if lake.has_partition("ground_truth_boxes", ds) and not missing else None
        recorded = {k: ckpt[k] for k in ("checkpoint_id", "path", "steps", "trained_steps", "stopped_by", "augmentation", "data_version", "seed", "params") if k in ckpt}
        recorded["params"] = json.loads(recorded["params"]) if isinstance(recorded["params"], str) else recorded["params"]  # a table, not an escaped string
        parameters = {"dataset": ds, "checkpoint": recorded,
                      **{name: getattr(spec, name).model_dump() for name in ("typicality", "patches", "features", "clusters")},
                      "labels_not_mined_yet": missing}
        # the charts training drew beside its weights (loss, held-out label gain by timestep, the evidence that stopped it)
        training = [(alt, Path(ckpt["path"]) / name) for alt, name in (("training loss", "loss_curve.png"), ("held-out label gain", "label_gain.png"),
                                                                      ("held-out evidence along training", "evidence.png"))]
        table = FigureTable(**figure_table(figures, GOALS.get(preset_of(spec), {}))) if figures else None
        page = render_report(ds, sections, figures, parameters, _parallel(lake, ds, ckpt["checkpoint_id"], images), _scaling(lake, ds),
                             table, [(alt, path.read_bytes()) for alt, path in training if path.is_file()])
        path = lake.files_dir(ds, "report", "index.html")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".html.tmp").write_text(page, encoding="utf-8")
        path.with_suffix(".html.tmp").replace(path)
        meta = {"path": MetadataValue.path(str(path)), "labels": len(sections), "labels_not_mined_yet": MetadataValue.json(missing), "bytes": len(page)}
        if figures:
            meta["figures"] = MetadataValue.json({k: v for k, v in figures.items() if not isinstance(v, dict)})
        return MaterializeResult(metadata=meta)

    return [report]
