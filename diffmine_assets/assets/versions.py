"""Code versions of a dataset's assets: what their results depend on besides
their inputs.

Dagster marks an asset stale when its code version differs from the one its
latest materialization recorded, and `diffmine materialize` reruns exactly the
stale or missing ones. Each version is the diffmine release plus a hash of the
options that change that asset's results (logging, saving and batch sizes are
left out: see RUN_ONLY in mining/datasets/spec.py). So editing `typicality:`
in diffmine.yaml shows `image_typicality` and everything below it stale, in
the UI too, and leaves the checkpoint fresh.
"""

from __future__ import annotations

import hashlib
import json

from .. import __version__


def _version(*parts) -> str:
    text = json.dumps([str(p) for p in parts])
    return f"{__version__}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def _boxes_stamp(spec) -> str:
    """The boxes file's path, size and modification time: an edited file
    shows ground_truth_boxes stale."""
    from ..mining.datasets.sources import boxes_source

    found = boxes_source(spec)
    if found is None or not found[0].exists():
        return ""
    st = found[0].stat()
    return f"{found[0]}:{st.st_size}:{st.st_mtime_ns}"


def code_versions(spec) -> dict[str, str]:
    source = _version(spec.kind, getattr(spec, "path", ""), spec.options.version())
    training = _version(spec.training.version(), spec.options.resolution)
    typicality = _version(spec.typicality.version())
    clusters = _version(spec.clusters.version())
    return {
        "images": source,
        "ground_truth_boxes": _version(source, _boxes_stamp(spec)),
        "checkpoint": training,
        "training_log": training,
        "image_typicality": typicality,
        "label_matrix": typicality,
        "typicality_history": typicality,
        "patch_typicality": _version(spec.patches.version()),
        "patch_features": _version(spec.features.version()),
        "clusters": clusters,
        "cluster_members": clusters,
        # translation reads the typicality options too (the outputs are scored with them)
        "translations": _version(spec.translation.version(), spec.typicality.version()),
        "parallel_typicality": _version(spec.translation.version(), spec.patches.version()),
        "parallel_clusters": _version(spec.translation.version(), spec.features.version(), spec.clusters.version()),
        "baseline_patches": _version(spec.baseline.version(), spec.patches.version()),
        "report": _version("report"),
        "evaluation": _version("evaluation"),
    }
