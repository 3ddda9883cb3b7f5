"""Object storage through fsspec: which roots are remote, and the filesystem
that reaches them.

Credentials and the endpoint come from the standard AWS variables
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION and, for an
S3-compatible server such as MinIO or moto, AWS_ENDPOINT_URL), never from
diffmine.yaml: a project file is committed, secrets are not.
"""

from __future__ import annotations

import os

import fsspec

LOCAL_SCHEMES = ("", "file")


def scheme(root: str) -> str:
    head, sep, _ = str(root).partition("://")
    return head if sep else ""


def is_remote(root: str) -> bool:
    return scheme(root) not in LOCAL_SCHEMES


def storage_options(root: str) -> dict:
    if scheme(root) in ("s3", "s3a"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        return {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}
    return {}


def object_fs(root: str):
    """(filesystem, path without scheme) for a remote root."""
    try:
        return fsspec.core.url_to_fs(root, **storage_options(root))
    except ImportError as exc:
        raise ValueError(f"the lake {root!r} needs the `cluster` extra (pip install 'diffmine[cluster]'): {exc}") from exc
