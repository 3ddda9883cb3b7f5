"""Real servers for the cluster tests, on 127.0.0.1, each in its own
temporary folder, stopped when the test ends: PostgreSQL (Debian's; it refuses
to run as root, so as root it runs as the `postgres` user), Redis, and moto's
S3 server from PyPI. `.ci/install-test-deps` installs the Debian packages."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, what: str, proc: subprocess.Popen | None = None, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.fail(f"PostgreSQL's {name} is not installed: run `bash .ci/install-test-deps`")
    return found[-1]


@contextmanager
def postgres():
    """A fresh cluster with a `dagster` database; yields its URL."""
    as_root = os.geteuid() == 0
    # not under pytest's tmp_path: its parents are private to this user, and
    # the server runs as `postgres`
    home = Path(tempfile.mkdtemp(prefix="diffmine-pg-"))
    os.chmod(home, 0o755)
    data = home / "data"
    port = free_port()

    def run(*args, check=True):
        cmd = ["runuser", "-u", "postgres", "--", *args] if as_root else list(args)
        return subprocess.run(cmd, check=check, capture_output=True, text=True)

    if as_root:
        shutil.chown(home, "postgres", "postgres")
    try:
        run(_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        run(_pg_bin("pg_ctl"), "-D", str(data), "-l", str(home / "server.log"), "-w", "-t", "60", "start",
            "-o", f"-h 127.0.0.1 -p {port} -k {home} -c fsync=off -c max_connections=200")
        run(_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "dagster")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/dagster"
    finally:
        run(_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def redis():
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed: run `bash .ci/install-test-deps`")
    port = free_port()
    proc = subprocess.Popen([exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, "redis-server", proc)
        yield f"redis://127.0.0.1:{port}"
    finally:
        _stop(proc)


@contextmanager
def s3(buckets=("lake", "logs")):
    """moto's S3 server; sets the AWS variables of this process (and of the
    children it starts) to reach it; yields its endpoint URL."""
    port = free_port()
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(aws_env(endpoint))
    try:
        wait_port(port, "moto_server", proc)
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint)
        for b in buckets:
            client.create_bucket(Bucket=b)
        yield endpoint
    finally:
        _stop(proc)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")


def aws_env(endpoint: str) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
