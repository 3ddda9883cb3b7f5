"""images -> checkpoint -> image_typicality -> patch_typicality through a real
Dagster instance, on a small built-in dataset and a tiny real model."""

import json
import os
import re

import numpy as np
from PIL import Image

import polars as pl
import pytest

from dagster import AssetKey, DagsterInstance
from diffmine_assets.definitions import build_definitions
from diffmine_assets.runner import run_dataset
from diffmine_assets.storage.catalog import Catalog
from diffmine_assets.storage.lake import Lake
from diffmine_assets_tests.conftest import FAST, REPO, write_config, write_image


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    ds = {"name": "builtin", "kind": "builtin", "options": {"images_per_label": 6, "resolution": 16, "seed": 1}, **FAST}
    cfg = write_config(root, [ds])
    mp = pytest.MonkeyPatch()
    mp.setenv("DAGSTER_HOME", str(root))
    instance = DagsterInstance.get()
    figures = run_dataset(instance, cfg, "builtin", log=lambda *_: None)
    yield root, cfg, instance, figures
    instance.dispose()
    mp.undo()


def query(root, sql, params=None):
    with Catalog(root / "catalog.duckdb", Lake(root / "lake")).reader() as con:
        return con.execute(sql, params or {}).fetchall()


def test_the_whole_chain_materializes(pipeline):
    root, _, instance, figures = pipeline
    assert figures["failed_runs"] == 0 and figures["runs"] == 6  # dataset, 4 labels, report
    assert sorted(figures["labels"]) == ["amber", "cobalt", "jade", "violet"]
    assert query(root, "select count(*) from image_typicality") == [(24,)]
    assert query(root, "select label, count(*) from patch_typicality where selection = 'top' group by label order by label") == [
        ("amber", 10), ("cobalt", 10), ("jade", 10), ("violet", 10)]
    # every result names the checkpoint it came from, and the checkpoint its data
    ckpt = query(root, "select checkpoint_id, data_version, steps from checkpoint")[0]
    assert ckpt[2] == 30
    assert query(root, "select distinct checkpoint_id from image_typicality") == [(ckpt[0],)]
    assert query(root, "select distinct checkpoint_id from patch_typicality") == [(ckpt[0],)]
    images_version = instance.get_latest_materialization_event(AssetKey(["builtin", "images"])).asset_materialization.tags["dagster/data_version"]
    assert ckpt[1] == images_version
    meta = instance.get_latest_materialization_event(AssetKey(["builtin", "checkpoint"])).asset_materialization.metadata
    assert "data:image/png;base64," in meta["loss_curve"].value
    assert query(root, "select count(*) from training_log") == [(3,)]
    # the side tables are materializations of the graph, with lineage
    for name in ("label_matrix", "typicality_history"):
        assert instance.get_materialized_partitions(AssetKey(["builtin", name])) == {f"builtin|{lbl}" for lbl in ("amber", "cobalt", "jade", "violet")}


def test_the_twenty_most_typical_patches_of_a_label_in_sql(pipeline):
    root = pipeline[0]
    rows = query(root, """
        select image_id, x0, y0, x1, y1, typicality, stderr from patch_typicality
        where label = $label and selection = 'top' order by rank_in_label limit 20""", {"label": "jade"})
    assert len(rows) == 10
    scores = [r[5] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(r[3] - r[1] == 14 and r[4] - r[2] == 14 and r[6] >= 0 for r in rows)
    params = query(root, "select distinct n_samples, t_min, t_max, seed, sampling, precision from image_typicality")
    assert len(params) == 1 and params[0][:5] == (8, 0.1, 0.5, 0, "importance-antithetic")
    assert params[0][5] in ("bfloat16", "float32")
    profile = query(root, "select t_profile from image_typicality limit 1")[0][0]
    assert len(json.loads(profile)) == 12


def test_rematerializing_is_deterministic_and_never_duplicates(pipeline):
    root, cfg, instance, _ = pipeline
    before = query(root, "select image_id, typicality from image_typicality where label_key = 'amber' order by image_id")
    figures = run_dataset(instance, cfg, "builtin", labels=["amber"], select=["image_typicality", "patch_typicality"], log=lambda *_: None, force=True)
    assert figures["failed_runs"] == 0 and figures["runs"] == 1
    after = query(root, "select image_id, typicality from image_typicality where label_key = 'amber' order by image_id")
    assert after == before
    assert query(root, "select count(*), count(distinct image_id) from image_typicality") == [(24, 24)]


def test_a_forced_checkpoint_trains_again_to_the_same_weights(pipeline):
    root, cfg, instance, _ = pipeline
    ckpt_before = query(root, "select checkpoint_id from checkpoint")[0][0]
    # up to date: not run at all
    assert run_dataset(instance, cfg, "builtin", select=["checkpoint"], log=lambda *_: None)["runs"] == 0
    # forced: it trains again from the start (a finished fit leaves no state
    # to resume), and every draw of a step comes from (seed, step)
    run_dataset(instance, cfg, "builtin", select=["checkpoint"], log=lambda *_: None, force=True)
    row = query(root, "select checkpoint_id, resumed_from_step, steps from checkpoint")[0]
    assert row == (ckpt_before, 0, 30)


def test_a_label_missing_from_the_checkpoint_says_to_retrain(tmp_path, monkeypatch):
    data = tmp_path / "photos"
    for li, label in enumerate(("cats", "dogs")):
        for i in range(3):
            write_image(data / label / f"{i}.png", size=(32, 32), seed=10 * li + i)  # hash() of a str differs per process
    ds = {"name": "photos", "kind": "folder", "path": "photos", "options": {"resolution": 16, "val_fraction": 0.0}, **FAST}
    cfg = write_config(tmp_path, [ds])
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    instance = DagsterInstance.get()
    try:
        assert run_dataset(instance, cfg, "photos", log=lambda *_: None)["failed_runs"] == 0
        for i in range(2):
            write_image(data / "birds" / f"{i}.png", size=(32, 32), seed=500 + i)
        run_dataset(instance, cfg, "photos", select=["images"], log=lambda *_: None)
        lines = []
        figures = run_dataset(instance, cfg, "photos", labels=["birds"], select=["image_typicality"], log=lines.append)
        assert figures["failed_runs"] == 1
        assert any("['birds'] are not in this checkpoint" in l and "re-materialize the checkpoint" in l for l in lines), lines
        # a label partition added by hand in the UI ("Add a partition") has no files: its run fails saying where labels come from
        from diffmine_assets.partitions import multi_key

        instance.add_dynamic_partitions("photos-labels", ["ghost"])
        result = build_definitions(cfg).resolve_job_def("photos__label_assets").execute_in_process(
            instance=instance, partition_key=multi_key("photos", "ghost"), asset_selection=[AssetKey(["photos", n]) for n in ("image_typicality", "label_matrix", "typicality_history")], raise_on_error=False)
        assert not result.success
        message = result.get_step_failure_events()[0].event_specific_data.error.message
        assert "no images with label key 'ghost'" in message and "Labels come from the data" in message, message
    finally:
        instance.dispose()


def test_clusters_round_trip_to_patch_boxes_in_sql(pipeline):
    root = pipeline[0]
    top = query(root, "select cluster, size, median_typicality from clusters where label = $label order by rank limit 1", {"label": "cobalt"})[0]
    members = query(root, """
        select m.image_id, m.x0, m.y0, m.x1, m.y1, m.rank_in_cluster, i.path, i.width, i.height, p.typicality
        from cluster_members m
        join images i using (dataset, image_id)
        join patch_typicality p on p.dataset = m.dataset and p.label_key = m.label_key and p.image_id = m.image_id
             and p.x0 = m.x0 and p.y0 = m.y0 and p.selection = 'top'
        where m.label = $label and m.cluster = $cluster order by m.rank_in_cluster""", {"label": "cobalt", "cluster": top[0]})
    assert len(members) == top[1]
    assert [m[5] for m in members] == list(range(1, top[1] + 1))
    typs = sorted(m[9] for m in members)
    assert np.median(typs) == pytest.approx(top[2])
    for _id, x0, y0, x1, y1, _r, path, w, h, _t in members:
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert Image.open(path).crop((x0, y0, x1, y1)).size == (x1 - x0, y1 - y0)
    # every top patch has a fixed-size feature vector
    dims = query(root, "select distinct len(feature) from patch_features")
    assert len(dims) == 1 and dims[0][0] > 8


def test_pictures_in_the_ui_and_the_report_on_disk(pipeline):
    root, _, instance, figures = pipeline
    meta = instance.get_latest_materialization_event(AssetKey(["builtin", "clusters"])).asset_materialization.metadata
    assert meta["grid"].value.startswith("![cluster grid](data:image/png;base64,")
    for key in ("image_typicality", "patch_typicality"):
        meta = instance.get_latest_materialization_event(AssetKey(["builtin", key])).asset_materialization.metadata
        assert "data:image/png;base64," in meta["heatmaps" if key == "image_typicality" else "strips"].value
    report = figures["report"]
    assert report and report.endswith("index.html")
    page = open(report, encoding="utf-8").read()
    assert page.count("data:image/png;base64,") >= 12  # grid, strips, heatmaps for 4 labels
    for label in ("amber", "cobalt", "jade", "violet"):
        assert f">{label}</h2>" in page
    assert "top1_hit_rate" in page and "cluster_purity" in page  # ground truth figures
    assert "checkpoint_id" in page and "n_samples" in page


def test_the_report_reads_in_a_browser(pipeline):
    """The report opened from disk in Chromium, as a reader opens it: the
    figures table with its must-beat column, a cluster grid and the maps with
    their colour scale are there and drawn (screenshots in the test's folder)."""
    playwright = pytest.importorskip("playwright.sync_api", reason="install the test extras: pip install -e '.[test]'")
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    root, _, _, figures = pipeline
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"file://{figures['report']}")
            table = page.locator("table.quality")
            assert table.is_visible() and "must beat" in table.locator("thead").inner_text()
            assert table.get_by_text("Does the model know the labels?").is_visible()
            table.screenshot(path=str(root / "report_figures.png"))
            for alt, width in (("clusters of amber", 0), ("heatmaps of amber", 300)):
                img = page.locator(f'img[alt="{alt}"]')
                img.scroll_into_view_if_needed()
                assert img.evaluate(f"i => i.complete && i.naturalWidth > {width}"), alt  # decoded (the maps: wide enough to hold a colour bar)
                img.screenshot(path=str(root / f"report_{alt.replace(' ', '_')}.png"))
        finally:
            browser.close()


def test_the_ui_shows_every_column_described_and_figures_rounded(pipeline):
    """What a user reads in the UI: each table's columns with a description
    (storage/columns.py), and metadata figures to 4 significant digits, not
    0.0014074036461124706."""
    _, _, instance, _ = pipeline
    undescribed = {}
    for table in ("images", "checkpoint", "training_log", "image_typicality", "label_matrix", "patch_typicality", "patch_features",
                  "clusters", "cluster_members", "translations", "parallel_typicality", "parallel_clusters", "evaluation"):
        meta = instance.get_latest_materialization_event(AssetKey(["builtin", table])).asset_materialization.metadata
        columns = meta["dagster/column_schema"].value.columns
        assert columns, table
        missing = [c.name for c in columns if not c.description]
        if missing:
            undescribed[table] = missing
    assert undescribed == {}
    meta = instance.get_latest_materialization_event(AssetKey(["builtin", "image_typicality"])).asset_materialization.metadata
    for name in ("mean_typicality", "median_stderr"):
        value = meta[name].value
        assert value == float(f"{value:.4g}") and value != 0, (name, value)


def readme_queries() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("## Questions answered in SQL")
    end = text.index("\n## ", start + 5)
    return re.findall(r"```sql\n(.*?)```", text[start:end], flags=re.S)


def test_every_readme_query_runs_against_the_catalog(pipeline):
    root = pipeline[0]
    queries = readme_queries()
    assert len(queries) == 7
    ckpt = query(root, "select checkpoint_id from checkpoint")[0][0]
    # the README says which images label_matrix covers: the held-out ones
    relpath = query(root, "select relpath from images where split = 'val' order by relpath limit 1")[0][0]
    # (these tests score every image, typicality.label_matrix: all; the default scores the held-out ones, which the README's example picks)
    values = {"label": "jade", "relpath": relpath, "before": ckpt, "after": ckpt, "metric": "accuracy_val", "source": "amber", "target": "cobalt", "cluster": 1}
    results = []
    for sql in queries:
        params = {k: v for k, v in values.items() if f"${k}" in sql}
        rows = query(root, sql, params)
        assert rows, sql
        results.append(rows)
    top, distinct, one_image, elements, quality, change, compare = results
    assert len(top) == 10 and top[0][6] >= top[-1][6]
    assert {r[0] for r in distinct} == {"amber", "cobalt", "jade", "violet"}
    assert len(one_image) == 4  # one image under every label
    assert elements[0][0] == 1
    assert quality[0][0] == ckpt and quality[0][4] == 0.25  # accuracy_val beside its chance
    assert all(r[2] == pytest.approx(1.0) and r[3] == pytest.approx(0.0) for r in compare)
    assert all(r[0] == 1 and r[7] != r[8] for r in change)  # the same location, two versions


def test_hostile_label_values_are_only_ever_parameters(pipeline):
    root, cfg, _, _ = pipeline
    hostile = "x'); drop view images; --"
    for sql in readme_queries():
        params = {k: hostile for k in ("label", "relpath", "before", "after", "metric", "source", "target") if f"${k}" in sql}
        if "$cluster" in sql:
            params["cluster"] = 1
        assert query(root, sql, params) == [] or "$" not in sql
    assert query(root, "select count(*) from images")[0][0] == 24
    from diffmine_assets.cli import main as cli_main
    assert cli_main(["--config", str(cfg), "sql", "select count(*) as n from images where label = $l", "--param", f"l={hostile}", "--format", "json"]) == 0


def _evaluate(cfg, control: str, log=None, with_spec: bool = False):
    """The evaluation asset's figures, computed directly from the stored tables."""
    from diffmine_assets.assets.evaluation import evaluate_stored
    from diffmine_assets.mining.config import load_config

    project = load_config(cfg)
    figures, made = evaluate_stored(Lake(project.lake), "builtin", project.dataset("builtin"), control, log=log or (lambda *_: None))
    return (figures, made) if with_spec else figures


def test_label_matrix_predicts_and_eval_scores_model_control_and_chance(pipeline):
    root, cfg, _, _ = pipeline
    # every image under every label: one predicted label per image, finalists got every sample
    rows = query(root, "select count(*), sum(predicted::int), count(distinct image_id) from label_matrix")[0]
    assert rows == (24 * 4, 24, 24)
    assert query(root, "select distinct n_samples from label_matrix where finalist order by 1") == [(8,)]
    figures = _evaluate(cfg, "shuffled")
    assert figures["labels"] == 4 and figures["chance"]["accuracy_val"] == 0.25
    assert 0 <= figures["accuracy_val"] <= 1 and figures["accuracy_val_images"] == query(root, "select count(*) from images where split = 'val'")[0][0]
    assert 0 < figures["chance"]["pixel_auc_pr"] < 1 and 0 <= figures["chance"]["top1_hit_rate"] <= 1
    control = figures["control"]
    assert control["kind"] == "shuffled" and {"accuracy_val", "top1_hit_rate", "pixel_auc_pr"} <= set(control)
    # the control was trained like the model (same steps) on shuffled labels, and is kept: a second eval trains nothing
    trained = list((root / "lake" / "files" / "builtin" / "controls" / "shuffled").glob("*/training.json"))
    assert len(trained) == 1 and json.loads(trained[0].read_text())["steps"] == 30
    state = root / "lake" / "files" / "builtin" / "controls" / "shuffled" / "in_progress" / "train_state.json"
    stamp = state.stat().st_mtime_ns
    again = _evaluate(cfg, "shuffled")
    assert state.stat().st_mtime_ns == stamp  # found finished: not one step trained, not even a save
    assert again["control"] == control
    assert len(list((root / "lake" / "files" / "builtin" / "controls" / "shuffled").glob("*/training.json"))) == 1
    # the config edited after the results were made: the control is still trained and scored as the stored results
    # were (their records), not with the new options; the user is told what differs
    import yaml
    edited = yaml.safe_load(cfg.read_text())
    edited["datasets"][0]["training"]["learning_rate"] = 3e-4
    edited["datasets"][0]["typicality"]["n_samples"] = 4
    original = yaml.safe_load(cfg.read_text())["datasets"][0]
    made_k, made_block = original.get("clusters", {}).get("k", 32), original.get("features", {}).get("block", 1)
    edited["datasets"][0]["clusters"] = {**edited["datasets"][0].get("clusters", {}), "k": made_k + 1}
    edited["datasets"][0]["features"] = {**edited["datasets"][0].get("features", {}), "block": 1 - made_block if made_block in (0, 1) else 0}
    edited_cfg = cfg.parent / "edited" / "diffmine.yaml"
    edited_cfg.parent.mkdir(exist_ok=True)
    edited["lake"], edited["catalog"] = str(root / "lake"), str(root / "catalog.duckdb")
    edited_cfg.write_text(yaml.safe_dump(edited))
    said = []
    as_made, made = _evaluate(edited_cfg, "shuffled", log=said.append, with_spec=True)
    assert state.stat().st_mtime_ns == stamp and as_made["control"] == control
    # the evaluation table records the options the figures were made with, not the edited ones
    from diffmine_assets.mining.evaluation.figures import evaluation_table
    recorded = json.loads(evaluation_table(as_made, made)["params"][0])
    assert recorded["training"]["learning_rate"] == 1e-3 and recorded["typicality"]["n_samples"] == 8
    assert (recorded["clusters"]["k"], recorded["features"]["block"]) == (made_k, made_block)  # from the clusters' record
    assert as_made["chance"]["translation_target_win"] == figures["chance"]["translation_target_win"]
    assert any(line.startswith("training:") and "learning_rate" in line for line in said), said
    assert any(line.startswith("typicality:") and "n_samples" in line for line in said), said
    # the untrained control is built like the checkpoint's network (here 2x2 cells, the default)
    untrained = _evaluate(cfg, "untrained")
    assert untrained["control"]["kind"] == "untrained" and 0 <= untrained["control"]["accuracy_val"] <= 1
    # the translations' figures, beside their chance level and plain regeneration of the same images
    for key in ("translation_target_win", "element_swap_rate", "layout_ssim"):
        assert 0 <= figures[key] <= 1 and figures["chance"][key] is not None, key
    assert figures["translations"] == 24
    assert figures["chance"]["layout_ssim"] < 1 and figures["background_psnr_db"] > 0
    regen = figures["translation_control"]
    assert regen["kind"] == "plain regeneration" and 0 <= regen["layout_ssim"] <= 1 and regen["translations"] == 24
    # each translation figure minus each control's, paired over the same 24 (image, target) pairs of 8 images, with its interval;
    # the label-change chance is computed (the untranslated sources), never an assumed 0.5
    # the mining figures' differences from chance and from the control, image by image, match the figures themselves
    for fig in ("accuracy_val", "top1_hit_rate", "pixel_auc_pr"):
        for level, name in ((figures["chance"][fig], f"{fig}_minus_chance"), (control[fig], f"{fig}_minus_shuffled")):
            assert abs(figures["gaps"][name]["difference"] - (figures[fig] - level)) < 2e-3, (name, figures["gaps"][name], figures[fig], level)
    gaps = {k: v for k, v in figures["gaps"].items() if k.startswith(("translation", "element", "layout"))}
    assert set(gaps) == {"translation_target_win_minus_regeneration", "element_swap_rate_minus_regeneration", "layout_ssim_minus_regeneration",
                         "translation_target_win_minus_untranslated", "element_swap_rate_minus_untranslated",
                         "translation_target_win_minus_confined_regeneration", "element_swap_rate_minus_confined_regeneration"}
    for name, gap in gaps.items():
        # the swap counts only the images holding an element of their own label
        assert gap["low"] <= gap["difference"] <= gap["high"] and gap["images"] == (figures["element_swap_translations"] // 3 if "swap" in name else 8), (name, gap)
    assert gaps["translation_target_win_minus_untranslated"]["pairs"] == 24
    assert abs(gaps["translation_target_win_minus_untranslated"]["difference"] - (figures["translation_target_win"] - figures["chance"]["translation_target_win"])) < 1e-3
    assert abs(gaps["layout_ssim_minus_regeneration"]["difference"] - (figures["layout_ssim"] - regen["layout_ssim"])) < 1e-3
    for name in ("layout_ssim_minus_regeneration", "translation_target_win_minus_untranslated", "element_swap_rate_minus_untranslated"):
        assert figures["goals_met"][name] == (gaps[name]["low"] > 0), name
    assert "layout_ssim_above_regeneration" not in figures["goals_met"]  # a strict > with no uncertainty is no longer a goal
    regen_pngs = list((root / "lake" / "files" / "builtin" / "controls" / "regenerate").glob("*/*/*.png"))
    assert len(regen_pngs) == 24 + 8  # every translation, and each source at model resolution
    # the masked translations' third control: regeneration inside each translation's own mask, one picture per translation
    assert len(list((root / "lake" / "files" / "builtin" / "controls" / "confined").glob("*/*.png"))) == 24
    assert gaps["element_swap_rate_minus_confined_regeneration"]["pairs"] == gaps["element_swap_rate_minus_regeneration"]["pairs"]


def test_the_evaluation_table_and_the_asset_checks(pipeline):
    from dagster import AssetCheckKey
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    root, cfg, instance, _ = pipeline
    # the figures as data, one row per (label, metric), with chance beside them
    acc = query(root, "select value, chance from evaluation where label = 'all' and metric = 'accuracy_val'")
    assert len(acc) == 1 and 0 <= acc[0][0] <= 1 and acc[0][1] == 0.25
    per_label = query(root, "select label, chance from evaluation where metric = 'accuracy_val' and label <> 'all' order by label")
    held_out = query(root, "select distinct label from images where split = 'val' order by label")
    assert [r[0] for r in per_label] == [r[0] for r in held_out] and all(r[1] == 0.25 for r in per_label)
    pixel = query(root, "select value, chance from evaluation where metric = 'pixel_auc_pr'")[0]
    assert 0 < pixel[1] < 1
    win = query(root, "select value, chance from evaluation where metric = 'translation_target_win'")
    assert len(win) == 1 and 0 <= win[0][1] <= 1 and 0 <= win[0][0] <= 1
    # a paired gap: its null 0 as chance, and its 95 % interval
    gap = query(root, "select value, chance, interval_low, interval_high from evaluation where metric = 'translation_target_win_minus_untranslated'")
    assert len(gap) == 1 and gap[0][1] == 0.0 and gap[0][2] <= gap[0][0] <= gap[0][3]
    # the checks ran with their assets, on every label partition
    checks = {"image_typicality": ["maps_finite"], "patch_typicality": ["top_patches_do_not_overlap", "label_has_patches"],
              "cluster_members": ["members_belong_to_label"], "evaluation": ["quality_goals"]}
    for asset, names in checks.items():
        for name in names:
            records = instance.event_log_storage.get_asset_check_execution_history(AssetCheckKey(AssetKey(["builtin", asset]), name), limit=10)
            assert records, (asset, name)
            if asset != "evaluation":  # the goals are warnings: a tiny model misses them
                assert {r.status for r in records} == {AssetCheckExecutionRecordStatus.SUCCEEDED}, (asset, name)


def test_an_asset_check_fails_on_a_broken_input(pipeline, tmp_path):
    from diffmine_assets.assets.checks import build_checks
    from diffmine_assets.mining.config import load_config

    root, cfg, _, _ = pipeline
    maps_finite = build_checks(load_config(cfg).dataset("builtin"))[0]
    table = Lake(root / "lake").read_partition("image_typicality", "builtin", "amber")
    maps = np.load(table["map_path"][0])
    assert maps_finite(image_typicality=table).passed
    maps[0, 0, 0, 0] = np.nan  # a diverged model's map
    broken = tmp_path / "maps.npy"
    np.save(broken, maps)
    result = maps_finite(image_typicality=table.with_columns(pl.lit(str(broken)).alias("map_path")))
    assert not result.passed and "1 of" in result.description


def test_diffmine_eval_stores_the_evaluation_and_prints_its_figures(pipeline, capsys):
    from diffmine_assets.cli import main as cli_main

    root, cfg, instance, _ = pipeline
    assert cli_main(["--config", str(cfg), "eval", "--dataset", "builtin", "--control", "none"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(out[-1])
    assert figures["chance"]["accuracy_val"] == 0.25 and "top1_hit_rate" in figures and "control" not in figures
    # each figure printed beside the level it must beat and whether it cleared it, not as raw JSON
    table = {line.split()[0]: line for line in out[:-1] if line.split()}
    assert "to beat" in table["figure"] and "cleared" in table["figure"]
    assert " chance" in table["accuracy_val"] and table["accuracy_val"].split()[3] in ("yes", "NO")
    gap = figures["gaps"]["translation_target_win_minus_untranslated"]
    assert f"[{gap['low']:+.4f}, {gap['high']:+.4f}]" in table["translation_target_win_minus_untranslated"]
    assert any(line.startswith("goals met: ") for line in out)
    # a mining figure is judged by its paired difference from the level it must beat, image by image, with its interval
    top1 = figures["gaps"]["top1_hit_rate_minus_chance"]
    assert top1["images"] == figures["top1_images"] and top1["low"] is not None
    assert f"chance; model minus it [{top1['low']:+.4f}, {top1['high']:+.4f}]" in table["top1_hit_rate"]
    assert table["top1_hit_rate"].split()[3] == ("yes" if top1["low"] > 0 else "NO")
    assert query(root, "select round(value, 4), round(interval_low, 4) from evaluation where metric = 'top1_hit_rate_minus_chance'") == [(top1["difference"], top1["low"])]
    assert "layout_ssim" in figures and "translation_control" not in figures  # no control asked, none run
    # the correspondence baseline ran on the same images first, and is compared on the same boxes
    assert 0 <= figures["top1_hit_rate_correspondence"] <= 1 and figures["chance"]["top1_hit_rate_correspondence"] == figures["chance"]["top1_hit_rate"]
    assert query(root, "select distinct method from baseline_patches") == [("correspondence",)]
    assert query(root, "select count(distinct label) from baseline_patches") == [(4,)]
    assert query(root, "select value, chance from evaluation where metric = 'top1_hit_rate_correspondence'")[0][1] == figures["chance"]["top1_hit_rate"]
    stored = instance.get_latest_materialization_event(AssetKey(["builtin", "evaluation"])).asset_materialization.metadata["figures"].value
    assert stored["top1_hit_rate"] == figures["top1_hit_rate"]


def test_translations_and_parallel_clusters_materialize_and_answer_sql(pipeline):
    root, _, instance, _ = pipeline
    labels = ["amber", "cobalt", "jade", "violet"]
    # 2 most typical images per label, each into the 3 other labels
    assert query(root, "select label, count(*), count(distinct image_id) from translations group by label order by label") == [(lbl, 6, 2) for lbl in labels]
    assert query(root, "select count(*) from translations where label_key = target_label_key") == [(0,)]
    paths = [r[0] for r in query(root, "select path from translations")]
    assert all(Image.open(p).size == (16, 16) for p in paths)
    # the translated images are the label's most typical ones
    top = query(root, "select t.label, max(t.typicality) from image_typicality t group by t.label order by t.label")
    picked = query(root, "select tr.label, max(t.typicality) from translations tr join image_typicality t using (image_id) group by tr.label order by tr.label")
    assert picked == top
    meta = instance.get_latest_materialization_event(AssetKey(["builtin", "translations"])).asset_materialization.metadata
    assert "data:image/png;base64," in meta["grid"].value
    # parallel typicality: one row per (location, label); the location's score is the median over its labels
    rows = query(root, "select location, median(typicality), any_value(median_typicality), count(*) from parallel_typicality group by location")
    assert len(rows) == 12 and all(n == 4 for *_, n in rows)
    assert all(abs(med - stored) < 1e-9 for _, med, stored, _ in rows)
    # "how does element X change from label a to label b": the best cluster's locations under amber and under cobalt
    change = query(root, """
        select m.cluster, a.version_path, b.version_path, b.typicality - a.typicality
        from parallel_cluster_members m
        join parallel_typicality a on a.location = m.location and a.label_key = 'amber'
        join parallel_typicality b on b.location = m.location and b.label_key = 'cobalt'
        where m.cluster = 1""")
    assert change and all(a != b for _, a, b, _ in change)
    assert query(root, "select sum(size) from parallel_clusters") == [(12,)]
    meta = instance.get_latest_materialization_event(AssetKey(["builtin", "parallel_clusters"])).asset_materialization.metadata
    assert "data:image/png;base64," in meta["grid"].value
    page = (root / "lake" / "files" / "builtin" / "report" / "index.html").read_text()
    assert "parallel clusters" in page and page.count("translations of ") == 4


def test_translate_one_image_from_the_command_line(pipeline, tmp_path, capsys):
    root, cfg, _, _ = pipeline
    from diffmine_assets.cli import main as cli_main

    relpath = query(root, "select relpath from images where label = 'amber' order by relpath limit 1")[0][0]
    out = tmp_path / "one.png"
    argv = ["--config", str(cfg), "translate", "--dataset", "builtin", "--image", relpath, "--to", "cobalt", "--out", str(out)]
    assert cli_main(argv) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["source_label_key"] == "amber" and last["target_label_key"] == "cobalt" and last["out"] == str(out)
    first = np.asarray(Image.open(out))
    assert first.shape == (16, 16, 3)
    assert cli_main(argv) == 0  # the same inputs give the same pixels
    assert np.array_equal(np.asarray(Image.open(out)), first)
    capsys.readouterr()
    assert cli_main(["--config", str(cfg), "translate", "--dataset", "builtin", "--image", "no/such.png", "--to", "cobalt"]) == 2
    assert "no image 'no/such.png'" in capsys.readouterr().err
    assert cli_main(["--config", str(cfg), "translate", "--dataset", "builtin", "--image", relpath, "--to", "mauve"]) == 2
    assert "no label 'mauve'" in capsys.readouterr().err


def test_a_one_label_dataset_materializes_with_nothing_to_translate(tmp_path, monkeypatch):
    for i in range(6):
        write_image(tmp_path / "photos" / "only" / f"{i}.png", size=(20, 20), seed=i)
    cfg = write_config(tmp_path, [{"name": "photos", "kind": "folder", "path": "photos", "options": {"resolution": 16, "val_fraction": 0.2}, **FAST}])
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    instance = DagsterInstance.get()
    try:
        done = run_dataset(instance, cfg, "photos", log=lambda *_: None)
    finally:
        instance.dispose()
    assert done["failed_runs"] == 0 and "translations" in done["ran"]["photos / only"]
    assert query(tmp_path, "select count(*) from translations") == [(0,)]
    assert query(tmp_path, "select count(*) from parallel_typicality") == [(0,)]
    assert (tmp_path / "lake" / "files" / "photos" / "report" / "index.html").exists()


def test_untranslated_sources_are_scored_once_each_exactly_as_each_pair_scores_them(pipeline):
    """The chance level of the translation figures scores every translated
    source untranslated under (target, source); each source is now scored
    once under its own label and all its targets, not once per target."""
    from diffmine_assets.assets.evaluation import stored_results
    from diffmine_assets.mining.config import load_config
    from diffmine_assets.mining.evaluation.translations import untranslated_maps
    from diffmine_assets.mining.tensors import model_space
    from diffmine_assets.mining.training.checkpoints import checkpoint_of_rows
    from diffmine_assets.mining.translation.tables import score_translations

    root, cfg, _, _ = pipeline
    project = load_config(cfg)
    lake = Lake(project.lake)
    stored = stored_results(lake, "builtin")
    rows = stored.translations
    assert rows["source_path"].n_unique() < len(rows)  # sources with several targets: the case it saves
    model = checkpoint_of_rows(rows, stored.checkpoint, lake.files_dir("builtin", "checkpoints"))
    pilot = stored.images
    typ = project.dataset("builtin").typicality
    per_pair = score_translations(model, model_space(model, rows["source_path"].to_list()), rows["label_key"].to_list(),
                                  rows["target_label_key"].to_list(), typ, pilot).maps.numpy()
    np.testing.assert_allclose(untranslated_maps(model, rows, typ, pilot), per_pair, rtol=0, atol=1e-6)
