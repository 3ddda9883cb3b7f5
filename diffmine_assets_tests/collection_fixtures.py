"""Small collections written in exactly the published formats of the
paper's datasets, quirks included (a year that is no number, an image listed
but missing, a finding with no box, file names with several separators,
ChestX-ray14's split header columns and its 'Infiltrate' alias)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from .conftest import write_image


def write_cardb(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    records = [
        {"file": "cars/a.jpg", "year": 1957, "make": "Citroen"},
        {"file": "cars/b.jpg", "year": "c. 1962"},
        {"file": "cars/c.jpg", "year": "unknown"},
        {"file": "cars/d.jpg", "year": 1969.0},
        {"file": "cars/e.jpg", "year": "1950s?"},
        {"file": "cars/gone.jpg", "year": 1971},
        {"image": "cars/f.jpg", "year": "1958-1961"},
    ]
    for i, r in enumerate(records):
        name = r.get("file") or r.get("image")
        if "gone" not in name:
            write_image(root / name, seed=100 + i, fmt="JPEG")
    (root / "metadata.json").write_text(json.dumps(records))
    return root


def write_ftt(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_image(root / "1900" / "F" / "p1.png", seed=1)
    write_image(root / "1900" / "M" / "p2.png", seed=2)
    write_image(root / "1910s" / "p3.png", seed=3)
    write_image(root / "1925" / "p4.png", seed=4)  # not a decade
    write_image(root / "misc" / "p5.png", seed=5)
    write_image(root / "loose.png", seed=6)
    (root / "1930").mkdir()
    return root


def write_g3(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(["United_Kingdom_51.5_-0.1_0003", "United_Kingdom_52.2_0.1_0004", "France-00012", "Korea, South_001", "nolabel", "12_34"]):
        write_image(root / f"{name}.jpg", seed=200 + i, fmt="JPEG")
    return root


def write_places365(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "categories_places365.txt").write_text("/a/airfield 0\n/b/bedroom 1\n/a/apartment_building/outdoor 2\n")
    lines = []
    for i, cat in enumerate([0, 1, 2, 0, 1, 2]):
        name = f"Places365_val_{i + 1:08d}.jpg"
        write_image(root / "val_256" / name, seed=300 + i, fmt="JPEG")
        lines.append(f"{name} {cat}")
    lines += ["Places365_val_00000099.jpg 1", "Places365_val_00000001.jpg 77", ""]
    (root / "places365_val.txt").write_text("\n".join(lines))
    return root


FINDINGS = ("Effusion", "Infiltration", "Mass")


def _chest(rng: np.random.Generator, size: int) -> np.ndarray:
    """A radiograph-like background: bright field, two darker lungs, noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 0.75 - 0.1 * yy
    for cx in (0.3, 0.7):
        img -= 0.3 * np.exp(-(((xx - cx) / 0.16) ** 2 + ((yy - 0.5) / 0.3) ** 2))
    img += rng.normal(0, 0.03, (size, size))
    return img


def _draw_finding(arr: np.ndarray, finding: str, box: tuple[int, int, int, int], rng: np.random.Generator) -> None:
    x, y, w, h = box
    if finding == "Mass":  # a bright round opacity
        yy, xx = np.mgrid[0:h, 0:w]
        disc = ((xx - w / 2 + 0.5) / (w / 2)) ** 2 + ((yy - h / 2 + 0.5) / (h / 2)) ** 2 <= 0.8
        arr[y : y + h, x : x + w][disc] = 0.95
    elif finding == "Effusion":  # a dark fluid level, lighter towards its top
        arr[y : y + h, x : x + w] = np.linspace(0.35, 0.05, h)[:, None]
    else:  # Infiltration: streaks
        sub = arr[y : y + h, x : x + w]
        sub[:, ::3] = 1.0
        sub[:, 1::3] = 0.15


def write_chestxray14(root: Path, per_finding: int = 6, size: int = 64, box: int = 20, seed: int = 0) -> dict:
    """Images with synthetic findings drawn inside their listed boxes, in
    two image folders like the release; every third image carries two
    findings; the metadata and box files with the published columns. Returns
    what was written (the quirks the tests look for)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows, boxes = [], []
    n = per_finding * len(FINDINGS)
    for i in range(n):
        name = f"{i + 1:08d}_000.png"
        folder = root / f"images_{1 + i % 2:03d}" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        findings = [FINDINGS[i % len(FINDINGS)]]
        if i % 3 == 2:
            findings.append(FINDINGS[(i + 1) % len(FINDINGS)])
        arr = _chest(rng, size)
        taken: list[tuple[int, int]] = []
        for f in findings:
            while True:
                x, y = int(rng.integers(0, size - box)), int(rng.integers(0, size - box))
                if all(abs(x - a) >= box or abs(y - b) >= box for a, b in taken):
                    break
            taken.append((x, y))
            _draw_finding(arr, f, (x, y, box, box), rng)
            label = "Infiltrate" if f == "Infiltration" else f  # the box file's own spelling
            if i != 0:  # the first image's finding has no box
                boxes.append(f"{name},{label},{x}.0,{y}.0,{box}.0,{box}.0,,,")
        Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8), "L").save(folder / name)
        rows.append(f"{name},{'|'.join(findings)},0,{i + 1},58,M,PA,{size},{size},0.143,0.143,")
    rows.append("00009999_000.png,Mass,0,9999,40,F,PA,64,64,0.143,0.143,")  # listed, missing
    boxes += ["00009998_000.png,Mass,1.0,1.0,5.0,5.0,,,",  # unknown file
              f"00000002_000.png,Infiltrate,{size + 5}.0,3.0,8.0,8.0,,,",  # outside its image (and not its finding)
              f"00000004_000.png,Effusion,{size - 6}.0,{size - 6}.0,10.0,10.0,,,",  # partly outside: clipped
              "00000005_000.png,Hernia,1.0,1.0,5.0,5.0,,,"]  # a finding the dataset does not have
    header = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")
    (root / "Data_Entry_2017.csv").write_text("\n".join([header, *rows]) + "\n")
    (root / "BBox_List_2017.csv").write_text("\n".join(["Image Index,Finding Label,Bbox [x,y,w,h],,,", *boxes]) + "\n")
    return {"images": n, "memberships": n + n // 3, "missing": 1}
