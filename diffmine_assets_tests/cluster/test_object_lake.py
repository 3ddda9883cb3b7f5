"""The lake on an S3 server (moto, on 127.0.0.1): tables written whole
without rename, read back and queried by `diffmine sql` with no catalog file;
files published from one machine's mirror and fetched into another's."""

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import polars as pl
import pytest
import yaml

from diffmine_assets.storage.catalog import Catalog
from diffmine_assets.storage.lake import Lake, LakeError
from diffmine_assets_tests.services import s3

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def endpoint():
    with s3(buckets=("lake",)) as url:
        yield url


def frame(n, label="a", start=0):
    return pl.DataFrame({"dataset": ["d"] * n, "label": [label] * n, "x": list(range(start, start + n))})


def test_tables_are_single_objects_and_rewrites_replace_exactly_their_rows(endpoint, tmp_path):
    lake = Lake("s3://lake/t1", mirror=tmp_path / "m")
    assert lake.remote and not lake.has_partition("t", "d", "a")
    lake.write_partition("t", frame(3, "a"), "d", "a")
    lake.write_partition("t", frame(2, "b"), "d", "b")
    lake.write_partition("t", frame(5, "a", start=10), "d", "a")
    keys = sorted(o["Key"] for o in boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket="lake", Prefix="t1/")["Contents"])
    # one object per partition, nothing temporary left behind (there is no rename on S3)
    assert keys == ["t1/t/dataset=d/label=a/part.parquet", "t1/t/dataset=d/label=b/part.parquet"]
    assert lake.read_partition("t", "d", "a")["x"].to_list() == list(range(10, 15))
    assert lake.read_partition("t", "d", "b", columns=["x"]).columns == ["x"]
    assert lake.tables() == ["t"] and lake.has_table("t") and not lake.has_table("u")
    with pytest.raises(LakeError, match="materialize it first"):
        lake.read_partition("t", "d", "c")
    with pytest.raises(LakeError):
        lake.partition_dir("t", "../x")
    cat = Catalog(None, lake)
    assert cat.ensure_views() == []  # nothing to keep: views are made when a reader connects
    assert cat.query("select label, count(*), min(x) from t group by label order by label")[1] == [("a", 5, 10), ("b", 2, 0)]


def test_diffmine_sql_reads_the_store_with_no_catalog_file(endpoint, tmp_path):
    lake = Lake("s3://lake/t2", mirror=tmp_path / "m")
    lake.write_partition("images", pl.DataFrame({"image_id": ["x", "y"], "label": ["a", "b"]}), "d")
    cfg = tmp_path / "diffmine.yaml"
    cfg.write_text(yaml.safe_dump({"lake": "data/lake", "datasets": [{"name": "d", "kind": "builtin"}]}))
    env = dict(os.environ, DIFFMINE_CONFIG=str(cfg), DIFFMINE_LAKE_URL="s3://lake/t2", DAGSTER_HOME=str(tmp_path))
    out = subprocess.run([str(Path(sys.executable).parent / "diffmine"), "sql", "select label from images order by label", "--format", "json"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"label": "a"}, {"label": "b"}]
    assert not (tmp_path / "data").exists()  # no local lake, no catalog file


def test_files_published_by_one_machine_are_fetched_by_another(endpoint, tmp_path):
    a = Lake("s3://lake/t3", mirror=tmp_path / "machine-a")
    b = Lake("s3://lake/t3", mirror=tmp_path / "machine-b")
    ckpt = a.files_dir("d", "checkpoints", "c1")
    ckpt.mkdir(parents=True)
    (ckpt / "weights.bin").write_bytes(b"v1" * 100)
    (ckpt / ".weights.bin.123.tmp").write_bytes(b"half")  # being written: never published
    # the table that names the files is written after them
    a.write_partition("checkpoint", pl.DataFrame({"path": [str(ckpt)]}), "d")
    assert b.fetch_files() == 1
    got = b.files_dir("d", "checkpoints", "c1")
    assert (got / "weights.bin").read_bytes() == b"v1" * 100 and not (got / ".weights.bin.123.tmp").exists()
    assert b.fetch_files() == 0  # nothing new

    # a new version of the same size is seen by its ETag
    (ckpt / "weights.bin").write_bytes(b"v2" * 100)
    assert a.publish_files() == 1
    # a file b is still writing is never replaced by the store's older copy
    (got / "draft.npy").write_bytes(b"mine")
    assert b.fetch_files() == 1
    assert (got / "weights.bin").read_bytes() == b"v2" * 100 and (got / "draft.npy").read_bytes() == b"mine"

    # deleted where it was written: deleted in the store, so not fetched back
    (ckpt / "weights.bin").unlink()
    assert a.publish_files() == 1
    fresh = Lake("s3://lake/t3", mirror=tmp_path / "machine-c")
    assert fresh.fetch_files() == 0


def test_a_remote_deployment_without_its_environment_says_what_is_missing(monkeypatch):
    from diffmine_assets.deployment import DeploymentError, deployment_name

    monkeypatch.setenv("DIFFMINE_DEPLOYMENT", "cluster")
    for v in ("DIFFMINE_LAKE_URL", "DIFFMINE_CELERY_BROKER", "DIFFMINE_CELERY_BACKEND", "DAGSTER_POSTGRES_URL", "DIFFMINE_LOG_BUCKET"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("DIFFMINE_LAKE_URL", "s3://lake/x")
    with pytest.raises(DeploymentError, match="DIFFMINE_CELERY_BROKER, DIFFMINE_CELERY_BACKEND, DAGSTER_POSTGRES_URL, DIFFMINE_LOG_BUCKET"):
        deployment_name()
    monkeypatch.setenv("DIFFMINE_DEPLOYMENT", "cloud")
    with pytest.raises(DeploymentError, match="'cloud' is not a deployment; expected one of local, cluster, kubernetes"):
        deployment_name()
