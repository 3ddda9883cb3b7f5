"""The paper's collections in their own formats, and ground truth from a
boxes file: labels, memberships, skips and box problems, each counted."""

from pathlib import Path

import polars as pl
import pytest

from diffmine_assets.mining.datasets.boxes_file import read_boxes_file
from diffmine_assets.mining.datasets.ingest import ground_truth, ingest
from diffmine_assets.mining.datasets.paper_formats import decade_of_folder, places_category, year_of
from diffmine_assets.mining.datasets.base import DatasetError
from diffmine_assets.mining.datasets.registry import discover_labels
from diffmine_assets.mining.config import ConfigError, parse_config
from diffmine_assets.mining.evaluation.metrics import classification_figures

from diffmine_assets_tests.collection_fixtures import write_cardb, write_chestxray14, write_ftt, write_g3, write_places365
from diffmine_assets_tests.conftest import write_image


def spec_of(kind, path, **extra):
    return parse_config({"datasets": [{"name": "d", "kind": kind, "path": str(path), **extra}]}).datasets[0]


def reasons(result):
    return {rel: reason.split(":")[0] for rel, reason in result.skipped}


def test_year_and_decade_parsing():
    assert year_of(1957) == 1957 and year_of(1969.0) == 1969 and year_of("c. 1962") == 1962 and year_of(" 1950s? ") == 1950
    for bad in ("unknown", "", None, "1958-1961", True, 19570, float("nan")):
        with pytest.raises(ValueError):
            year_of(bad)
    assert [decade_of_folder(n) for n in ("1950", "1950s", "1950's", "1950-1959", "1955", "misc")] == ["1950s"] * 4 + [None, None]
    assert places_category("/a/airfield") == "airfield" and places_category("/a/apartment_building/outdoor") == "apartment_building/outdoor"


def test_cardb_labels_by_decade_and_counts_what_it_cannot_use(tmp_path):
    r = ingest("d", spec_of("cardb", write_cardb(tmp_path / "c")), tmp_path / "_f")
    assert r.label_counts == {"1950s": 2, "1960s": 2}
    assert reasons(r) == {"cars/c.jpg": "no label", "cars/f.jpg": "no label", "cars/gone.jpg": "file not found"}
    assert dict(zip(r.images["relpath"], r.images["label"])) == {"cars/a.jpg": "1950s", "cars/e.jpg": "1950s", "cars/b.jpg": "1960s", "cars/d.jpg": "1960s"}
    by_century = ingest("d", spec_of("cardb", tmp_path / "c", options={"rule": "century"}), tmp_path / "_g")
    assert by_century.label_counts == {"20th century": 4}


def test_cardb_metadata_as_a_mapping_and_broken_metadata(tmp_path):
    root = tmp_path / "c"
    write_image(root / "x.png", seed=1)
    (root / "metadata.json").write_text('{"x.png": {"year": 1931}, "y.png": 1940}')
    r = ingest("d", spec_of("cardb", root), tmp_path / "_f")
    assert r.label_counts == {"1930s": 1} and reasons(r) == {"y.png": "file not found"}
    (root / "metadata.json").write_text("{not json")
    with pytest.raises(DatasetError, match="metadata.json: not valid JSON"):
        ingest("d", spec_of("cardb", root), tmp_path / "_f")


def test_ftt_folders_per_decade(tmp_path):
    root = write_ftt(tmp_path / "ftt")
    r = ingest("d", spec_of("ftt", root), tmp_path / "_f")
    assert r.label_counts == {"1900s": 2, "1910s": 1}  # nested folders (F/, M/) belong to their decade
    assert reasons(r) == {"1925/p4.png": "no label", "misc/p5.png": "no label", "loose.png": "not in a decade folder"}
    assert "1930s" in r.empty_labels
    assert discover_labels(spec_of("ftt", root)) == ["1900s", "1910s"]


def test_g3_country_from_file_names_with_several_separators(tmp_path):
    r = ingest("d", spec_of("g3", write_g3(tmp_path / "g")), tmp_path / "_f")
    assert r.label_counts == {"France": 1, "Korea, South": 1, "United Kingdom": 2}
    assert reasons(r) == {"nolabel.jpg": "no label", "12_34.jpg": "no label"}
    assert r.images["label_key"].str.contains(r"^[a-z0-9][a-z0-9_-]*$").all()
    custom = ingest("d", spec_of("g3", tmp_path / "g", options={"label_pattern": r"^(?P<label>[A-Za-z]+)", "separators_to_spaces": False}), tmp_path / "_g")
    assert custom.label_counts == {"France": 1, "Korea": 1, "United": 2, "nolabel": 1}
    with pytest.raises(ConfigError, match="named group"):
        spec_of("g3", tmp_path, options={"label_pattern": "^(.+)_"})


def test_places365_categories_and_split_files(tmp_path):
    root = write_places365(tmp_path / "p")
    r = ingest("d", spec_of("places365", root), tmp_path / "_f")
    assert r.label_counts == {"airfield": 2, "apartment_building/outdoor": 2, "bedroom": 2}
    assert sorted(reasons(r).values()) == ["file not found", "no label"]
    assert r.images["relpath"].str.starts_with("val_256/").all()
    kept = ingest("d", spec_of("places365", root, options={"categories": ["/b/bedroom"]}), tmp_path / "_g")
    assert kept.label_counts == {"bedroom": 2}
    with pytest.raises(DatasetError, match=r"\['kitchen'\] are not in categories_places365.txt"):
        ingest("d", spec_of("places365", root, options={"categories": ["kitchen"]}), tmp_path / "_h")


def test_chestxray14_multi_label_memberships_and_its_own_box_file(tmp_path):
    root = tmp_path / "cx"
    wrote = write_chestxray14(root, per_finding=4)
    spec = spec_of("chestxray14", root)
    r = ingest("d", spec, tmp_path / "_f")
    imgs = r.images
    assert len(imgs) == wrote["memberships"] and imgs["sha256"].n_unique() == wrote["images"]
    assert imgs["image_id"].n_unique() == len(imgs)  # one id per (image, finding): tables keyed by image_id stay one row each
    # an image keeps one split across its findings, so held-out images never leak into training
    assert imgs.group_by("sha256").agg(pl.col("split").n_unique().alias("n"))["n"].max() == 1
    assert reasons(r) == {"00009999_000.png": "file not found"}
    gt = ground_truth("d", spec, imgs)
    assert gt.problem_counts == {"unknown file": 1, "outside the image": 1, "clipped": 1, "unknown label": 1}
    boxes = gt.boxes
    # every box in the file of a kept image with its own finding is stored, under that finding's membership;
    # 'Infiltrate' (the box file's spelling) is the metadata's 'Infiltration'; the first image's finding has no box
    assert len(boxes) == wrote["memberships"] - 1 + 1  # one box per membership but the first, plus the clipped extra
    assert set(boxes["kind"]) == {"Effusion", "Infiltration", "Mass"}
    joined = boxes.join(imgs.select("image_id", "label", "width", "height"), on="image_id")
    assert (joined["label"] == joined["label_right"]).all()
    assert ((joined["x1"] <= joined["width"]) & (joined["y1"] <= joined["height"]) & (joined["x0"] >= 0)).all()
    only = ingest("d", spec_of("chestxray14", root, options={"findings": ["Mass"]}), tmp_path / "_g")
    assert only.label_counts == {"Mass": 4}
    assert discover_labels(spec) == ["Effusion", "Infiltration", "Mass"]


def test_accuracy_of_a_multi_label_image_counts_any_of_its_labels_and_its_chance_follows():
    images = pl.DataFrame({"image_id": ["a1", "a2", "b1"], "sha256": ["A", "A", "B"], "label_key": ["x", "y", "x"], "split": ["val"] * 3})
    matrix = pl.DataFrame({"image_id": ["a1", "a2", "b1"], "label_key": ["x", "y", "x"], "under_label_key": ["y", "y", "z"], "predicted": [True] * 3})
    figs = classification_figures(matrix.vstack(matrix.with_columns(pl.lit("x").alias("under_label_key"), pl.lit(False).alias("predicted"))), images)
    assert figs["accuracy_val"] == round(2 / 3, 4)  # a1 predicted y: one of image A's labels
    assert figs["accuracy_chance"] == round((2 / 3 + 2 / 3 + 1 / 3) / 3, 4)  # 3 labels seen; image A holds 2 of them


def test_a_boxes_file_gives_ground_truth_to_folder_and_manifest_datasets(tmp_path):
    root = tmp_path / "photos"
    for i in range(3):
        write_image(root / "cats" / f"c {i}.png", size=(40, 30), seed=i)
        write_image(root / "dogs" / f"d{i}.png", size=(40, 30), seed=10 + i)
    pl.DataFrame({
        "file": ["cats/c 0.png", "c 1.png", "dogs/d0.png", "dogs/d1.png", "nowhere.png", "dogs/d2.png", "cats/c 2.png"],
        "label": ["cats", "cats", "dogs", "cats", "dogs", "birds", "cats"],
        "x": [1.5, 0, 30, 2, 1, 1, 50], "y": [2, 0, 20, 2, 1, 1, 1], "w": [10, 5, 20, 5, 5, 5, 5], "h": [10, 5, 20, 5, 5, 5, 5],
    }).write_parquet(tmp_path / "boxes.parquet")
    spec = spec_of("folder", root, boxes=str(tmp_path / "boxes.parquet"))
    r = ingest("d", spec, tmp_path / "_f")
    gt = ground_truth("d", spec, r.images)
    assert gt.problem_counts == {"label not on image": 1, "unknown file": 1, "unknown label": 1, "outside the image": 1, "clipped": 1}
    rows = gt.boxes.sort("x0").select("label", "x0", "y0", "x1", "y1").rows()
    assert rows == [("cats", 0, 0, 5, 5), ("cats", 1, 2, 12, 12), ("dogs", 30, 20, 40, 30)]  # floats widened to whole pixels; clipped to 40x30
    csv = tmp_path / "boxes.csv"
    csv.write_text("path,finding,x,y,w,h\ncats/c 0.png,cats,1,2,10,10\n")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nphotos/cats/c 0.png,cats\nphotos/dogs/d0.png,dogs\n")
    mspec = spec_of("manifest", manifest, boxes=str(csv))
    m = ingest("d", mspec, tmp_path / "_m")
    assert ground_truth("d", mspec, m.images).boxes.select("label", "x0", "y1").rows() == [("cats", 1, 12)]
    assert ground_truth("d", spec_of("folder", root), r.images) is None
    csv.write_text("file,x,y,w,h\na.png,1,2,3,4\n")
    with pytest.raises(DatasetError, match="no column for 'label'"):
        read_boxes_file(csv)


def test_images_are_read_where_they_lie_unless_a_copy_is_asked(tmp_path):
    root = tmp_path / "photos"
    for i in range(2):
        write_image(root / "cats" / f"c{i}.png", seed=i)
    write_image(root / "dogs" / "d0.PNG", seed=9)
    plain = ingest("d", spec_of("folder", root), tmp_path / "_f")
    assert all(p.startswith(str(root)) for p in plain.images["path"]) and not (tmp_path / "_f" / "images").exists()
    copied = ingest("d", spec_of("folder", root, options={"copy_images": True}), tmp_path / "_f")
    store = tmp_path / "_f" / "images"
    for r in copied.images.iter_rows(named=True):
        assert r["path"] == str(store / r["sha256"][:2] / (r["sha256"] + Path(r["relpath"]).suffix.lower()))
        assert Path(r["path"]).read_bytes() == (root / r["relpath"]).read_bytes()
    again = ingest("d", spec_of("folder", root, options={"copy_images": True}), tmp_path / "_f")
    assert again.images["path"].to_list() == copied.images["path"].to_list() and len(list(store.rglob("*.*"))) == 3
