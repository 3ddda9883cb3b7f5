"""The UI in a real browser: `dagster dev` (webserver and daemon) on
127.0.0.1, headless Debian Chromium driven by Playwright. A person's path:
see every asset, launch one dataset x label partition by clicking, wait for
the run, see the asset's metadata and picture. Screenshots on failure."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter
from diffmine_assets.runner import run_dataset
from diffmine_assets_tests.conftest import SMALL_BUILTIN, write_config

CHROMIUM = "/usr/bin/chromium"
ASSETS = ["images", "ground_truth_boxes", "checkpoint", "training_log", "image_typicality", "patch_typicality", "patch_features", "clusters", "cluster_members", "report"]

playwright = pytest.importorskip("playwright.sync_api", reason="install the test extras: pip install -e '.[test]'")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_materialize_a_partition_from_the_ui(tmp_path):
    cfg = write_config(tmp_path, [SMALL_BUILTIN])
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path), DIFFMINE_CONFIG=str(cfg), DIFFMINE_SENSOR="stopped")
    os.environ["DAGSTER_HOME"] = str(tmp_path)
    instance = DagsterInstance.get()
    assert run_dataset(instance, cfg, "builtin", select=["images", "checkpoint"], log=lambda *_: None)["failed_runs"] == 0
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port), "-m", "diffmine_assets.definitions"],
                              env=env, cwd=tmp_path, stdout=open(tmp_path / "dev.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    page = None
    try:
        wait_http(f"{base}/server_info", 120)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            try:
                page.goto(f"{base}/assets")
                page.wait_for_timeout(4000)
                for name in ("Skip", "Dismiss"):  # first-load "Join the Dagster community" dialog
                    btn = page.get_by_role("button", name=name)
                    if btn.count():
                        btn.first.click()
                        page.wait_for_timeout(500)
                for asset in ASSETS:
                    assert page.get_by_text(asset, exact=True).count() >= 1, asset

                page.goto(f"{base}/assets/image_typicality")
                page.get_by_role("button", name="Materialize…").first.click()
                for key in ("builtin", "jade"):
                    page.get_by_role("dialog").first.get_by_text("Select a partition or create one").first.click()
                    page.get_by_placeholder("Filter partitions").fill(key)
                    page.locator("label").filter(has_text=key).last.click()
                    page.keyboard.press("Escape")
                    page.wait_for_timeout(300)
                page.get_by_role("button", name="Launch 1 run").click()

                deadline = time.monotonic() + 300
                runs = []
                while time.monotonic() < deadline:
                    runs = instance.get_runs(filters=RunsFilter(job_name="__ASSET_JOB"))
                    if runs and runs[0].status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
                        break
                    time.sleep(1)
                assert runs, "no run was launched"
                assert runs[0].status == DagsterRunStatus.SUCCESS, runs[0].status
                assert runs[0].tags.get("dagster/partition/dataset") == "builtin" and runs[0].tags.get("dagster/partition/label") == "jade"

                page.goto(f"{base}/assets/image_typicality?view=events")
                page.wait_for_timeout(3000)
                body = page.inner_text("body")
                assert "mean_typicality" in body and "heatmaps" in body, body[:2000]
                page.get_by_text("[Show Markdown]").first.click()
                page.wait_for_timeout(1000)
                assert page.locator("img[src^='data:image/png;base64,']").count() >= 1
                page.keyboard.press("Escape")

                # a backfill of the missing partitions, as a person launches it, run by the backfill daemon
                page.goto(f"{base}/assets/image_typicality")
                page.get_by_role("button", name="Materialize…").first.click()
                page.get_by_role("dialog").first.get_by_text("Select a partition or create one").first.click()
                page.get_by_placeholder("Filter partitions").fill("builtin")
                page.locator("label").filter(has_text="builtin").last.click()
                page.keyboard.press("Escape")
                page.wait_for_timeout(300)
                page.get_by_role("dialog").first.get_by_role("button", name="All").nth(1).click()
                page.get_by_text("Backfill only failed and missing partitions within selection").click()
                page.get_by_role("button", name="Launch backfill").click()
                deadline = time.monotonic() + 400
                while time.monotonic() < deadline:
                    backfills = instance.get_backfills()
                    if backfills and backfills[0].status.value not in ("REQUESTED",):
                        break
                    time.sleep(1)
                assert backfills and backfills[0].status.value == "COMPLETED_SUCCESS", backfills[0].status if backfills else None
                done = instance.get_materialized_partitions(AssetKey("image_typicality"))
                assert done == {"builtin|amber", "builtin|cobalt", "builtin|jade", "builtin|violet"}
                # the partition made by the single run was missing from nothing: not launched twice
                assert len(instance.get_runs(filters=RunsFilter(tags={"dagster/partition": "builtin|jade"}))) == 1
            except Exception:
                page.screenshot(path=str(tmp_path / "failure.png"))
                print(f"screenshot: {tmp_path / 'failure.png'}")
                raise
            finally:
                browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        instance.dispose()
