"""Every kind of bad input: a counted skip with its reason, or a clear error."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from diffmine_assets.mining.images import load_rgb
from diffmine_assets.mining.datasets.ingest import ingest
from diffmine_assets.mining.datasets.base import DatasetError
from diffmine_assets.mining.config import FolderDataset, IngestOptions, ManifestDataset, ManifestOptions
from diffmine_assets_tests.conftest import write_image


def folder(root: Path, **opts) -> FolderDataset:
    return FolderDataset(name="f", kind="folder", path=root, options=IngestOptions(**opts))


def run(root: Path, **opts):
    return ingest("f", folder(root, **opts), root / "_files")


def reasons(result) -> dict[str, str]:
    return {rel: reason for rel, reason in result.skipped}


def test_corrupt_truncated_and_non_image_files_are_counted_skips(tmp_path):
    root = tmp_path / "data"
    good = write_image(root / "cats" / "good.png", seed=1)
    (root / "cats" / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    full = write_image(tmp_path / "full.jpg", size=(64, 64), seed=2).read_bytes()
    (root / "cats" / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "cats" / "notes.txt").write_text("hello")
    (root / "cats" / ".DS_Store").write_bytes(b"\0\0")
    r = run(root)
    assert r.images["relpath"].to_list() == ["cats/good.png"]
    why = reasons(r)
    assert why["cats/notes.txt"].startswith("not an image")
    assert why["cats/garbage.jpg"].split(":")[0] in ("not an image", "corrupt or truncated", "unreadable")
    assert why["cats/truncated.jpg"].startswith("corrupt or truncated")
    assert why["cats/.DS_Store"] == "system file: not an image"  # not a candidate, but counted
    assert sum(r.skip_counts.values()) == 4
    assert Path(r.images["path"][0]) == good.resolve()


def test_odd_modes_are_accepted_and_load_as_rgb(tmp_path):
    root = tmp_path / "data"
    write_image(root / "x" / "gray.png", mode="L", seed=1)
    write_image(root / "x" / "rgba.png", mode="RGBA", seed=2)
    write_image(root / "x" / "palette.png", mode="P", seed=3)
    write_image(root / "x" / "sixteen.png", mode="I;16", seed=4)
    r = run(root)
    assert len(r.images) == 4 and not r.skipped
    modes = dict(zip(r.images["relpath"], r.images["mode"]))
    assert modes["x/gray.png"] == "L" and modes["x/rgba.png"] == "RGBA" and modes["x/palette.png"] == "P"
    assert modes["x/sixteen.png"].startswith("I")
    for p in r.images["path"]:
        img = load_rgb(p)
        assert img.mode == "RGB" and img.size == (40, 40)
    # 16-bit data is scaled, not clipped to white.
    arr = np.asarray(load_rgb(root / "x" / "sixteen.png"))
    assert 60 < arr.mean() < 200


def test_exif_rotation_is_applied(tmp_path):
    root = tmp_path / "data"
    img = Image.new("RGB", (60, 30), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    (root / "x").mkdir(parents=True)
    img.save(root / "x" / "rotated.jpg", exif=exif)
    r = run(root)
    assert (r.images["width"][0], r.images["height"][0]) == (30, 60)
    assert load_rgb(root / "x" / "rotated.jpg").size == (30, 60)


def test_too_small_and_decompression_bomb_are_skipped(tmp_path):
    root = tmp_path / "data"
    write_image(root / "x" / "tiny.png", size=(10, 40), seed=1)
    write_image(root / "x" / "ok.png", size=(40, 40), seed=2)
    # 1-bit PNGs declare many pixels in a few kilobytes: one over our own
    # limit, one over Pillow's hard limit (both caught before decoding).
    Image.new("1", (5000, 5000)).save(root / "x" / "bomb.png", optimize=True)
    Image.new("1", (20000, 20000)).save(root / "x" / "huge.png", optimize=True)
    assert (root / "x" / "huge.png").stat().st_size < 200_000
    r = run(root, min_side=16, max_pixels=10_000_000)
    why = reasons(r)
    assert why["x/tiny.png"].startswith("too small: 10x40")
    assert why["x/bomb.png"].startswith("too large: 5000x5000 = 25000000 pixels > max_pixels 10000000")
    assert why["x/huge.png"].startswith("too large") and "decompression bomb" in why["x/huge.png"]
    assert r.images["relpath"].to_list() == ["x/ok.png"]


def test_duplicates_are_kept_once(tmp_path):
    root = tmp_path / "data"
    a = write_image(root / "a" / "one.png", seed=7)
    (root / "a" / "two.png").write_bytes(a.read_bytes())
    (root / "b").mkdir()
    (root / "b" / "three.png").write_bytes(a.read_bytes())
    r = run(root)
    assert len(r.images) == 1 and r.images["relpath"][0] == "a/one.png"
    assert r.skip_counts == {"duplicate": 2}
    assert "same bytes as a/one.png" in reasons(r)["b/three.png"]
    assert r.empty_labels == ["b"]  # all its images were duplicates of another label's


def test_odd_file_and_label_names(tmp_path):
    root = tmp_path / "data"
    names = ["Zürich centre", "a,b|c", "東京", "x'); drop view images; --"]
    for i, n in enumerate(names):
        write_image(root / n / f"фото {i} (copy).png", seed=10 + i)
    (root / "empty label").mkdir()
    (root / "stray.png").write_bytes(b"")
    r = run(root)
    assert sorted(r.images["label"].to_list()) == sorted(names)
    assert r.images["label_key"].n_unique() == 4
    assert r.empty_labels == ["empty label"]
    assert reasons(r)["stray.png"].startswith("not in a label folder")
    for p in r.images["path"]:
        assert Path(p).exists()


def test_missing_path_and_non_folder_fail_clearly(tmp_path):
    with pytest.raises(DatasetError, match=r"dataset 'f': path .*nowhere does not exist"):
        run(tmp_path / "nowhere")
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(DatasetError, match="is not a folder"):
        run(f)


def test_split_is_by_content_and_every_label_keeps_a_training_image(tmp_path):
    root = tmp_path / "data"
    for i in range(30):
        write_image(root / "many" / f"{i}.png", seed=100 + i)
    write_image(root / "single" / "only.png", seed=999)
    r = run(root, val_fraction=0.5)
    split = dict(zip(r.images["relpath"], r.images["split"]))
    assert split["single/only.png"] == "train"
    assert 5 < sum(v == "val" for v in split.values()) < 25
    (root / "many" / "0.png").rename(root / "many" / "renamed.png")
    r2 = run(root, val_fraction=0.5)
    split2 = dict(zip(r2.images["relpath"], r2.images["split"]))
    assert split2["many/renamed.png"] == split["many/0.png"]


def manifest(path: Path, **opts) -> ManifestDataset:
    return ManifestDataset(name="m", kind="manifest", path=path, options=ManifestOptions(**opts))


def test_manifest_with_decade_rule_and_bad_rows(tmp_path):
    for i in range(4):
        write_image(tmp_path / "img" / f"car{i}.jpg", seed=i)
    pl.DataFrame({"file": ["img/car0.jpg", "img/car1.jpg", "img/car2.jpg", "img/car3.jpg", "img/gone.jpg", None], "year": ["1957", "1951", "1962", "vintage", "1970", "1980"]}).write_csv(tmp_path / "cars.csv")
    spec = manifest(tmp_path / "cars.csv", path_column="file", label_from={"column": "year", "rule": "decade"})
    r = ingest("m", spec, tmp_path / "_files")
    assert dict(zip(r.images["relpath"], r.images["label"])) == {"img/car0.jpg": "1950s", "img/car1.jpg": "1950s", "img/car2.jpg": "1960s"}
    assert r.skip_counts == {"no label": 1, "file not found": 1, "empty path": 1}
    assert "'vintage' is not a year" in reasons(r)["img/car3.jpg"]


def test_manifest_parquet_with_label_column_and_missing_column(tmp_path):
    write_image(tmp_path / "a.png", seed=1)
    write_image(tmp_path / "b.png", seed=2)
    pl.DataFrame({"path": ["a.png", "b.png"], "finding": ["Nodule", "No Finding"]}).write_parquet(tmp_path / "m.parquet")
    r = ingest("m", manifest(tmp_path / "m.parquet", label_column="finding"), tmp_path / "_f")
    assert sorted(r.images["label"].to_list()) == ["No Finding", "Nodule"]
    with pytest.raises(DatasetError, match=r"no column 'label'; columns are \['path', 'finding'\]"):
        ingest("m", manifest(tmp_path / "m.parquet"), tmp_path / "_f")
    with pytest.raises(DatasetError, match="does not exist"):
        ingest("m", manifest(tmp_path / "none.csv"), tmp_path / "_f")
