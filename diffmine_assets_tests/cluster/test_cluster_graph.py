"""The cluster deployment for real, on one machine: a Postgres instance, two
Celery worker processes fed through Redis, the lake on an S3 server (moto),
the daemon's sensor asking for the work. The built-in dataset is
materialized end to end (its first run launched by the user, `dagster job
launch`, then one run per label asked for by the sensor); one label run's
worker is SIGKILLed mid-step, and run monitoring, then run retries, see it
through. `diffmine sql` answers from the S3 lake with the rows of a local run
of the same seed. Run alone: pytest -m cluster."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import yaml

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus
from diffmine_assets_tests.conftest import REPO, SMALL_BUILTIN, write_config
from diffmine_assets_tests.services import aws_env, postgres, redis, s3

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

BIN = Path(sys.executable).parent
LABEL_JOB = "builtin__label_assets"


def _torch_steps() -> set[str]:
    from diffmine_assets.definitions import build_definitions

    defs = build_definitions(REPO / "diffmine.yaml")
    return {n.name for j in ("builtin__dataset_assets", LABEL_JOB) for n in defs.resolve_job_def(j).graph.node_defs if getattr(n, "pool", None) == "torch"}
FINAL = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def cluster_home(root: Path, pg: str, broker: str, endpoint: str) -> dict:
    """DAGSTER_HOME with deploy/cluster/dagster.yaml as shipped, but for the
    daemon's poll interval: 2 s instead of 30, so a dead worker is seen fast."""
    home = root / "home"
    home.mkdir()
    cfg = yaml.safe_load((REPO / "deploy" / "cluster" / "dagster.yaml").read_text())
    cfg["run_monitoring"]["poll_interval_seconds"] = 2
    (home / "dagster.yaml").write_text(yaml.safe_dump(cfg))
    return dict(os.environ, **aws_env(endpoint), DAGSTER_HOME=str(home), DIFFMINE_DEPLOYMENT="cluster",
                DIFFMINE_LAKE_URL="s3://lake/e2e", DIFFMINE_CELERY_BROKER=f"{broker}/0", DIFFMINE_CELERY_BACKEND=f"{broker}/1",
                DAGSTER_POSTGRES_URL=pg, DIFFMINE_LOG_BUCKET="logs", DIFFMINE_LAKE_MIRROR=str(root / "mirror"),
                OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", DIFFMINE_SENSOR_INTERVAL="5",
                # dagster-celery starts `celery` from PATH: this environment's
                PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _worker_of(pid: int, workers: set[int]) -> int | None:
    for _ in range(4):
        pid = _parent(pid)
        if pid is None or pid in workers:
            return pid
    return None


def _step_pid(instance: DagsterInstance, run_id: str) -> int | None:
    """The process the in-process executor runs the steps in (its engine
    event says so): the Celery worker's child that took the run."""
    for rec in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        pid = (rec.dagster_event.engine_event_data.metadata or {}).get("pid") if rec.dagster_event else None
        if pid is not None:
            return int(pid.value)
    return None


def _torch_intervals(instance: DagsterInstance, runs) -> list[tuple[float, float, str]]:
    torch_steps = _torch_steps()
    assert "builtin__image_typicality" in torch_steps and "builtin__checkpoint" in torch_steps, torch_steps
    spans = []
    for run in runs:
        if run.status != DagsterRunStatus.SUCCESS:
            continue
        starts = {}
        for rec in instance.all_logs(run.run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}):
            if rec.step_key not in torch_steps:
                continue
            if rec.dagster_event.event_type == DagsterEventType.STEP_START:
                starts[rec.step_key] = rec.timestamp
            elif rec.step_key in starts:
                spans.append((starts[rec.step_key], rec.timestamp, f"{run.run_id[:8]}:{rec.step_key}"))
    return sorted(spans)


def _sql(env: dict, query: str) -> list[dict]:
    out = subprocess.run([str(BIN / "diffmine"), "sql", query, "--format", "json"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


QUERIES = {
    "images": "select image_id, label, split from images order by image_id",
    "typicality": "select label, image_id, round(typicality, 4) as t from image_typicality order by label, image_id",
    "patches": "select label, selection, rank_in_label, image_id, x0, y0, round(typicality, 4) as t from patch_typicality order by all",
    "patch_counts": "select label, selection, count(*) as n, count(distinct (image_id, x0, y0)) as distinct_windows from patch_typicality group by all order by all",
    "clusters": "select label, count(*) as n from clusters group by label order by label",
}


def test_builtin_end_to_end_on_postgres_celery_and_s3_with_a_worker_killed(tmp_path):
    cfg = write_config(tmp_path, [SMALL_BUILTIN])
    (tmp_path / "dagster.yaml").unlink()  # the instance is the cluster's, in home/
    # the same project, same seed, on the laptop deployment, to compare rows with at the end: started first, it
    # runs while the cluster's services start and its daemon waits between ticks
    local = tmp_path / "local"
    local.mkdir()
    local_cfg = write_config(local, [SMALL_BUILTIN])
    local_env = {k: v for k, v in os.environ.items() if not k.startswith(("DIFFMINE_", "DAGSTER_"))}
    local_env.update(DAGSTER_HOME=str(local), DIFFMINE_CONFIG=str(local_cfg), OMP_NUM_THREADS="1")
    local_log = open(local / "materialize.log", "w")
    local_run = subprocess.Popen([str(BIN / "diffmine"), "materialize", "--dataset", "builtin"], env=local_env, stdout=local_log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with postgres() as pg, redis() as broker, s3() as endpoint:
            env = cluster_home(tmp_path, pg, broker, endpoint)
            env["DIFFMINE_CONFIG"] = str(cfg)
            home = Path(env["DAGSTER_HOME"])
            procs = []
            try:
                # two workers: two GPUs in the torch pool, set the way docs/DEPLOY.md says. First, alone: it
                # creates the instance's tables in the empty database, which two workers starting at once
                # would race to create (one dies on "type asset_keys already exists")
                subprocess.run([str(BIN / "dagster"), "instance", "concurrency", "set", "torch", "2"], env=env, cwd=home, check=True, capture_output=True)
                # two workers, one run at a time each, on both queues
                workers = []
                for name in ("w1", "w2"):
                    log = open(tmp_path / f"{name}.log", "w")
                    workers.append(subprocess.Popen([str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                                                     "-y", str(REPO / "deploy" / "cluster" / "celery.yaml"), "-q", "gpu,cpu",
                                                     "-n", name, "--", "--concurrency", "1"],
                                                    env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
                procs += workers
                procs.append(subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-m", "diffmine_assets.definitions"], env=env, cwd=home,
                                              stdout=open(tmp_path / "daemon.log", "w"), stderr=subprocess.STDOUT, start_new_session=True))
                # the dataset's first run is the user's (the sensor never starts a dataset nobody asked for): queued like the UI's Materialize
                subprocess.run([str(BIN / "dagster"), "job", "launch", "-m", "diffmine_assets.definitions", "-j", "builtin__dataset_assets",
                                "--tags", json.dumps({"dagster/partition": "builtin"})], env=env, cwd=home, check=True, capture_output=True)
                os.environ.update(DAGSTER_HOME=str(home), DAGSTER_POSTGRES_URL=pg)
                instance = DagsterInstance.get()
                assert type(instance.run_storage).__name__ == "PostgresRunStorage"

                deadline = time.monotonic() + 900
                killed, killed_pid = None, None
                while time.monotonic() < deadline:
                    runs = instance.get_runs()
                    label_runs = [r for r in runs if r.job_name == LABEL_JOB]
                    if killed is None:
                        # the first label run that reached a torch step: kill its worker process
                        for r in label_runs:
                            if r.status != DagsterRunStatus.STARTED:
                                continue
                            started = [e.step_key for e in instance.all_logs(r.run_id, of_type=DagsterEventType.STEP_START)]
                            pid = _step_pid(instance, r.run_id)
                            if "builtin__image_typicality" in started and pid:
                                os.kill(pid, signal.SIGKILL)
                                killed, killed_pid = r.run_id, pid
                                break
                    partitions = {r.tags.get("dagster/partition") for r in label_runs if r.status == DagsterRunStatus.SUCCESS}
                    if len(partitions) == 4 and all(r.status in FINAL for r in runs):
                        break
                    time.sleep(0.3)
                runs = instance.get_runs()
                states = [(r.job_name, r.tags.get("dagster/partition"), r.status.value) for r in runs]
                assert killed is not None, states
                label_runs = [r for r in runs if r.job_name == LABEL_JOB]
                dead = instance.get_run_by_id(killed)
                assert dead.status == DagsterRunStatus.FAILURE, states
                failure = [e.message for e in instance.all_logs(killed, of_type=DagsterEventType.RUN_FAILURE)]
                retries = [r for r in runs if r.tags.get("dagster/parent_run_id") == killed]
                assert len(retries) == 1 and retries[0].status == DagsterRunStatus.SUCCESS, (states, failure)
                assert len({r.tags.get("dagster/partition") for r in label_runs if r.status == DagsterRunStatus.SUCCESS}) == 4, states
                # runs at once, from the instance's own start and end times
                records = instance.get_run_records()
                edges = sorted([(r.start_time, 1) for r in records if r.start_time] + [(r.end_time, -1) for r in records if r.end_time])
                at_once = max_at_once = 0
                for _, step in edges:
                    at_once += step
                    max_at_once = max(max_at_once, at_once)
                assert 2 <= max_at_once <= 3, max_at_once

                # the runs ran in the workers' processes, on both workers
                pids = set()
                for run in label_runs:
                    for rec in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
                        worker = rec.asset_materialization.metadata.get("worker")
                        if worker is not None:
                            pids.add(int(worker.value.rsplit(":", 1)[1]))
                # a run's process is a child of the `celery` worker that
                # `dagster-celery worker start` (w1, w2) started
                parents = {_worker_of(p, {w.pid for w in workers}) for p in pids}
                assert parents == {w.pid for w in workers}, (pids, parents)

                # the torch pool (2 slots, counted per run) never let three torch steps run at once
                spans = _torch_intervals(instance, runs)
                depth = max_depth = 0
                for _, d in sorted([(a, 1) for a, _b, _k in spans] + [(b, -1) for _a, b, _k in spans], key=lambda e: (e[0], e[1])):
                    depth += d
                    max_depth = max(max_depth, depth)
                assert 1 <= max_depth <= 2, spans

                # compute logs of the workers' steps are in the object store
                logs = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket="logs").get("KeyCount", 0)
                assert logs > 0

                cluster_rows = {name: _sql(env, q) for name, q in QUERIES.items()}
                figures = {"runs": len(runs), "label_runs": len(label_runs), "max_concurrent_runs": max_at_once, "killed_run": killed[:8],
                           "killed_pid": killed_pid, "retry": retries[0].run_id[:8], "worker_pids": sorted(pids),
                           "workers": sorted(p for p in parents if p), "torch_steps": len(spans), "torch_steps_at_once": max_depth, "compute_log_objects": logs,
                           "failure": failure[:1]}
                instance.dispose()
            finally:
                for p in procs:
                    try:
                        os.killpg(p.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
                for p in procs:
                    try:
                        p.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        os.killpg(p.pid, signal.SIGKILL)
                for k in ("DAGSTER_HOME", "DAGSTER_POSTGRES_URL"):
                    os.environ.pop(k, None)
    except BaseException:
        if local_run.poll() is None:
            os.killpg(local_run.pid, signal.SIGKILL)  # the comparison will not be read: it must not outlive the test
        local_log.close()
        raise

    # the local run of the same project, same seed, waited for before any assertion can leave it running
    try:
        rc = local_run.wait(timeout=900)
    finally:
        if local_run.poll() is None:
            os.killpg(local_run.pid, signal.SIGKILL)
        local_log.close()

    # no duplicate rows, every label complete
    per_label = SMALL_BUILTIN["options"]["images_per_label"]
    assert len(cluster_rows["images"]) == 4 * per_label
    assert len({r["image_id"] for r in cluster_rows["typicality"]}) == len(cluster_rows["typicality"])
    assert all(r["n"] == r["distinct_windows"] for r in cluster_rows["patch_counts"]), cluster_rows["patch_counts"]
    assert rc == 0, (local / "materialize.log").read_text()[-3000:]
    local_rows = {name: _sql(local_env, q) for name, q in QUERIES.items()}
    for name in QUERIES:
        assert cluster_rows[name] == local_rows[name], name
    figures["rows_compared"] = {name: len(rows) for name, rows in cluster_rows.items()}
    print(json.dumps(figures))
