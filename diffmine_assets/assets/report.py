"""The report: one HTML page per dataset, with every label's pictures."""

from dagster import AssetDep, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from ..mining.parallel import parallel_grid, translation_grid
from ..mining.report import render_report
from ..mining.tables import load_array
from ..mining.visuals import as_png, cluster_grid, heatmaps, patch_strips
from ..mining.pictures import ImageCache
from ..partitions import asset_key, dataset_of_label, dataset_partitions
from ..resources import DiffmineResource
from ..storage.lake import LakeError
from .versions import code_versions

# what the page reads: every label's results, and the dataset's own tables
LABEL_INPUTS = ("clusters", "cluster_members", "patch_typicality", "image_typicality", "label_matrix")
DATASET_INPUTS = ("images", "checkpoint", "ground_truth_boxes")


def input_deps(ds: str) -> list[AssetDep]:
    """Every table a dataset-wide summary reads: its labels' results and its own tables."""
    return [AssetDep(asset_key(ds, name), partition_mapping=dataset_of_label) for name in LABEL_INPUTS] + [AssetDep(asset_key(ds, name)) for name in DATASET_INPUTS]


def build_report_asset(spec):
    ds = spec.name

    @asset(
        key=asset_key(ds, "report"),
        code_version=code_versions(spec)["report"],
        partitions_def=dataset_partitions(ds),
        # the figures come from the evaluation asset, computed once
        deps=[*input_deps(ds), AssetDep(asset_key(ds, "evaluation")), AssetDep(asset_key(ds, "translations"), partition_mapping=dataset_of_label),
              AssetDep(asset_key(ds, "parallel_clusters")), AssetDep(asset_key(ds, "parallel_cluster_members")), AssetDep(asset_key(ds, "parallel_typicality"))],
        group_name="report",
        kinds={"html"},
        description="A self-contained HTML page per dataset: per label the cluster grid, patch strips and heatmaps; "
        "the quality figures where the dataset has ground truth; the parameters and checkpoint behind them.",
    )
    def report(context: AssetExecutionContext, diffmine: DiffmineResource):
        dataset = context.partition_key
        lake = diffmine.lake
        images = lake.read_partition("images", dataset)
        ckpt = lake.read_partition("checkpoint", dataset).row(0, named=True)
        paths = dict(zip(images["image_id"], images["path"]))
        cache = ImageCache()
        sections, missing = [], []
        for label, key in images.select("label", "label_key").unique().sort("label_key").iter_rows():
            try:
                clusters = lake.read_partition("clusters", dataset, key)
                members = lake.read_partition("cluster_members", dataset, key)
                patches = lake.read_partition("patch_typicality", dataset, key)
                typ = lake.read_partition("image_typicality", dataset, key)
            except LakeError:  # a label not mined yet: say so in the page
                missing.append(label)
                continue
            maps = load_array(typ["map_path"][0]).astype("float32").mean(axis=1)
            translations = None
            if lake.has_partition("translations", dataset, key):
                tr = lake.read_partition("translations", dataset, key)
                tr = tr if not tr.is_empty() else None
                names = dict(zip(images["label_key"], images["label"]))
                labels_all = sorted(images["label_key"].unique().to_list())
                if tr is not None and set(tr["target_label_key"]) | {key} == set(labels_all):
                    translations = as_png(translation_grid(tr.select("image_id", "source_model_path").unique(maintain_order=True).rows(),
                                                           {(r["image_id"], r["target_label_key"]): r["path"] for r in tr.iter_rows(named=True)}, labels_all, names, key))
            sections.append({
                "label": label,
                "images": len(typ),
                "patches": int((patches["selection"] == "top").sum()),
                "clusters": clusters.sort("rank").to_dicts(),
                "grid": as_png(cluster_grid(clusters, members, paths, cache)),
                "strips": as_png(patch_strips(patches, cache)),
                "heatmaps": as_png(heatmaps(typ, maps, cache)),
                "translations": translations,
            })
        figures = None
        if lake.has_partition("ground_truth_boxes", dataset) and not missing:
            event = context.instance.get_latest_materialization_event(asset_key(ds, "evaluation"))
            stored = event.asset_materialization.metadata.get("figures") if event and event.asset_materialization else None
            figures = stored.value if stored is not None and stored.value.get("checkpoint_id") == ckpt["checkpoint_id"] else None
        spec = diffmine.dataset(dataset)
        parameters = {"dataset": dataset, "checkpoint": {k: ckpt[k] for k in ("checkpoint_id", "path", "steps", "data_version", "seed", "params")},
                      **{name: getattr(spec, name).model_dump() for name in ("typicality", "patches", "features", "clusters")},
                      "labels_not_mined_yet": missing}
        parallel = None
        if lake.has_partition("parallel_clusters", dataset):
            pcl = lake.read_partition("parallel_clusters", dataset)
            if not pcl.is_empty() and pcl["checkpoint_id"][0] == ckpt["checkpoint_id"]:
                ploc = lake.read_partition("parallel_typicality", dataset)
                pmem = lake.read_partition("parallel_cluster_members", dataset)
                parallel = as_png(parallel_grid(pcl, pmem, ploc, sorted(ploc["label_key"].unique().to_list()), dict(zip(images["label_key"], images["label"]))))
        scaling = None
        bench = lake.files_dir(dataset, "bench", "scaling")
        if (bench / "scaling.json").exists() and (bench / "scaling.png").exists():
            import json

            scaling = ((bench / "scaling.png").read_bytes(), json.loads((bench / "scaling.json").read_text()))
        page = render_report(dataset, sections, figures, parameters, parallel, scaling)
        path = lake.files_dir(dataset, "report", "index.html")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".html.tmp")
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(path)
        meta = {"path": MetadataValue.path(str(path)), "labels": len(sections), "labels_not_mined_yet": MetadataValue.json(missing), "bytes": len(page)}
        if figures:
            meta["figures"] = MetadataValue.json({k: v for k, v in figures.items() if not isinstance(v, dict)})
        return MaterializeResult(metadata=meta)

    return report
