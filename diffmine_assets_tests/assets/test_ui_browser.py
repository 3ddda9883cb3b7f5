"""The UI in a real browser: `diffmine ui` (dagster dev: webserver and
daemon) on 127.0.0.1, headless Debian Chromium driven by Playwright. A
person's path, with two datasets declared and the new-label sensor on:
opening the UI starts no run, see every asset, launch one
dataset x label partition by clicking, wait for the run, see the asset's
metadata and picture, backfill every missing label of a dataset (no run
fails: only real pairs are offered), then stop the server with SIGTERM.
Screenshots on failure."""

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
from diffmine_assets_tests.conftest import FAST, SMALL_BUILTIN, write_config, write_image

CHROMIUM = "/usr/bin/chromium"
ASSETS = ["images", "ground_truth_boxes", "checkpoint", "training_log", "image_typicality", "label_matrix", "typicality_history",
          "patch_typicality", "patch_features", "clusters", "cluster_members", "report"]


def open_materialize(page) -> None:
    """Materialize..., confirming the multi-asset's other outputs (label_matrix, typicality_history)."""
    page.get_by_role("button", name="Materialize…").first.click()
    page.wait_for_timeout(1500)
    confirm = page.get_by_role("button", name="Confirm")
    if confirm.count():
        confirm.first.click()


def our_processes(home) -> list[int]:
    """Processes whose environment names this test's DAGSTER_HOME."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if f"DAGSTER_HOME={home}".encode() in f.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                continue
    return found

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


def sensor_states(instance) -> list:
    from dagster._core.definitions.run_request import InstigatorType

    return [s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR) if s.name == "new_labels"]


def sensor_ticks(instance, at_least: int, timeout: float) -> list:
    """The new-label sensor's ticks, once it has ticked `at_least` times."""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ticks = [t for s in sensor_states(instance) for t in instance.get_ticks(s.instigator_origin_id, s.selector_id)]
        if len(ticks) >= at_least:
            return ticks
        time.sleep(1)
    raise TimeoutError(f"the sensor ticked fewer than {at_least} times in {timeout} s")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_materialize_a_partition_from_the_ui(tmp_path):
    # a second dataset whose labels are not the built-in's
    # three labels: the backfill below has two missing partitions, so the UI offers a backfill, not a single run
    for li, label in enumerate(("birds", "cats", "dogs")):
        for i in range(3):
            write_image(tmp_path / "photos" / label / f"{i}.png", size=(32, 32), seed=10 * li + i)
    photos = {"name": "photos", "kind": "folder", "path": "photos", "options": {"resolution": 16, "val_fraction": 0.0}, **FAST}
    cfg = write_config(tmp_path, [SMALL_BUILTIN, photos])
    # the sensor on, as a user starts the UI, looking every 3 s
    env = {k: v for k, v in os.environ.items() if k != "DIFFMINE_SENSOR"}
    env.update(DAGSTER_HOME=str(tmp_path), DIFFMINE_CONFIG=str(cfg), DIFFMINE_SENSOR_INTERVAL="3")
    os.environ["DAGSTER_HOME"] = str(tmp_path)
    instance = DagsterInstance.get()
    port = free_port()
    diffmine = os.path.join(os.path.dirname(sys.executable), "diffmine")
    server = subprocess.Popen([diffmine, "--config", str(cfg), "ui", "--port", str(port)],
                              env=env, cwd=tmp_path, stdout=open(tmp_path / "dev.log", "w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    page = None
    try:
        wait_http(f"{base}/server_info", 120)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            try:
                page.goto(f"{base}/assets/builtin")
                page.wait_for_timeout(4000)
                for name in ("Skip", "Dismiss"):  # first-load "Join the Dagster community" dialog
                    btn = page.get_by_role("button", name=name)
                    if btn.count():
                        btn.first.click()
                        page.wait_for_timeout(500)
                for asset in ASSETS:
                    assert page.get_by_text(asset, exact=True).count() >= 1, asset

                # opening the UI starts nothing: the sensor looks at the two datasets, never materialized, and
                # leaves their first run to the user (issue 27: it used to start a training nobody asked for)
                ticks = sensor_ticks(instance, at_least=1, timeout=120)
                assert instance.get_runs() == [], [r.job_name for r in instance.get_runs()]
                assert all("never materialized" in (t.skip_reason or "") for t in ticks), [t.skip_reason for t in ticks]
                page.goto(f"{base}/locations/diffmine_assets.definitions/sensors/new_labels")
                page.wait_for_timeout(2000)
                page.screenshot(path=str(tmp_path / "sensor_started_nothing.png"))
                # the sensor turned off (what `dagster sensor stop` does): below, the user's own backfill, not the sensor, makes photos' labels
                for state in sensor_states(instance):
                    instance.stop_sensor(state.instigator_origin_id, state.selector_id, None)
                # only photos is trained: builtin is there to be told apart in the catalog, and the backfill below
                # makes photos' two missing labels (every run of it starts a process and loads the model)
                cli = run_dataset(instance, cfg, "photos", select=["images", "checkpoint"], log=lambda *_: None)
                assert cli["failed_runs"] == 0

                # the command line's run is listed under its job, as a Dagster user looks for it
                page.goto(f"{base}/locations/diffmine_assets.definitions/jobs/photos__dataset_assets/runs")
                page.get_by_text(cli["run_ids"][0][:8]).first.wait_for()
                page.screenshot(path=str(tmp_path / "cli_run_under_its_job.png"))
                # one graph per dataset: a group named after the dataset, holding its stages (the groups were the stages, shared)
                page.goto(f"{base}/locations/diffmine_assets.definitions/asset-groups/photos")
                page.get_by_text("image_typicality").first.wait_for()
                page.wait_for_timeout(1000)
                page.screenshot(path=str(tmp_path / "one_graph_per_dataset.png"))

                page.goto(f"{base}/assets/photos/image_typicality")
                open_materialize(page)
                for key in ("photos", "cats"):
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
                assert runs[0].tags.get("dagster/partition/dataset") == "photos" and runs[0].tags.get("dagster/partition/label") == "cats"

                page.goto(f"{base}/assets/photos/image_typicality?view=events")
                page.wait_for_timeout(3000)
                body = page.inner_text("body")
                assert "mean_typicality" in body and "heatmaps" in body, body[:2000]
                page.get_by_text("[Show Markdown]").first.click()
                page.wait_for_timeout(1000)
                assert page.locator("img[src^='data:image/png;base64,']").count() >= 1
                page.keyboard.press("Escape")

                # a backfill of the missing partitions, as a person launches it, run by the backfill daemon
                page.goto(f"{base}/assets/photos/image_typicality")
                open_materialize(page)
                page.get_by_role("dialog").first.get_by_text("Select a partition or create one").first.click()
                page.get_by_placeholder("Filter partitions").fill("photos")
                page.locator("label").filter(has_text="photos").last.click()
                page.keyboard.press("Escape")
                page.wait_for_timeout(300)
                page.get_by_role("dialog").first.get_by_role("button", name="All").nth(1).click()
                page.get_by_text("Backfill only failed and missing partitions within selection").click()
                page.get_by_role("button", name="Launch backfill").click()
                # the backfill daemon launches one run per missing partition; they are waited for themselves (the
                # backfill's own status changes only at the daemon's next tick, up to 30 s after its last run ends)
                deadline = time.monotonic() + 400
                backfill_runs = []
                while time.monotonic() < deadline:
                    backfills = instance.get_backfills()
                    if backfills:
                        backfill_runs = instance.get_runs(filters=RunsFilter(tags={"dagster/backfill": backfills[0].backfill_id}))
                        if len(backfill_runs) == 2 and all(r.status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED) for r in backfill_runs):
                            break
                    time.sleep(1)
                assert backfills, "no backfill was launched"
                assert sorted(r.tags.get("dagster/partition") for r in backfill_runs) == ["photos|birds", "photos|dogs"], [r.tags for r in backfill_runs]
                assert {r.status for r in backfill_runs} == {DagsterRunStatus.SUCCESS}, [r.status for r in backfill_runs]
                failed = instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
                assert failed == [], [r.tags.get("dagster/partition") for r in failed]
                done = instance.get_materialized_partitions(AssetKey(["photos", "image_typicality"]))
                assert done == {"photos|birds", "photos|cats", "photos|dogs"}
                # the partition made by the single run was missing from nothing: not launched twice
                assert len(instance.get_runs(filters=RunsFilter(tags={"dagster/partition": "photos|cats"}))) == 1
            except Exception:
                page.screenshot(path=str(tmp_path / "failure.png"))
                print(f"screenshot: {tmp_path / 'failure.png'}")
                raise
            finally:
                browser.close()
    finally:
        # stopped as a service manager stops it: SIGTERM to the command, which must take its server along
        server.send_signal(signal.SIGTERM)
        try:
            rc = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            rc = None
        left = our_processes(tmp_path)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        instance.dispose()
    log = (tmp_path / "dev.log").read_text()
    assert rc == 0, log[-3000:]
    assert "Dagster services shut down." in log and "did not stop in time" not in log, log[-3000:]  # stopped, not killed
    assert left == []
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more
