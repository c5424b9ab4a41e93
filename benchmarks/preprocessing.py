"""Photos to cached arrays: catdog's prepare_dataset against the tutorial's single-threaded loop
(../shared/bench/tutorial_baseline.py, run in a subprocess with the same Python, on the same images)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from benchmarks.record import BASELINE, SHARED, benchmark, result
from catdog.data.dataset import prepare_dataset
from catdog.data.settings import DataSettings
from catdog.data.sources import find_images

# archive in ../shared/data -> the speed-up over the baseline that preprocessing should reach
PREPROCESSING_GOALS = {"kaggle-train-fullres-600.zip": 3.0, "PetImages-180.zip": 2.0}


def extract_cat_dog(archive: Path, dest: Path) -> Path:
    """Unpack a zip of cat/dog photos (class folders or Kaggle names) into dest/Cat and dest/Dog for the baseline."""
    raw = dest.with_name(dest.name + "-raw")
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(raw)
    found = find_images(raw, "dir")
    if [c.lower() for c in found.classes] != ["cat", "dog"]:
        raise SystemExit(f"{archive}: classes {found.classes}, expected cat and dog")
    for name in ("Cat", "Dog"):
        (dest / name).mkdir(parents=True)
    for path, label in zip(found.paths, found.labels, strict=True):
        os.replace(raw / path, dest / ("Cat", "Dog")[label] / path.replace("/", "_"))
    shutil.rmtree(raw)
    return dest


def read_all(folder: Path) -> None:
    """Read every file once, so neither contender pays for a cold disk cache."""
    for path in folder.rglob("*"):
        if path.is_file():
            path.read_bytes()


def run_baseline(pattern: str, *args: str) -> re.Match:
    """Run the tutorial baseline (BASELINE) with `args`; the match of `pattern` in what it prints."""
    proc = subprocess.run([sys.executable, str(BASELINE), *args], capture_output=True, text=True, check=True)
    found = re.search(pattern, proc.stdout)
    if found is None:
        raise SystemExit(f"unexpected baseline output: {proc.stdout}{proc.stderr}")
    return found


def time_baseline(folder: Path, resolution: int, out: Path) -> tuple[float, int]:
    """(seconds, images) as printed by the baseline's own preprocessing timer."""
    args = [str(folder), "--skip-train", "--size", str(resolution), "--out", str(out)]
    found = run_baseline(r"preprocess_s=([\d.]+) n_images=(\d+)", *args)
    return float(found.group(1)), int(found.group(2))


def prepare_gray(folder: Path, resolution: int, cache_dir: Path):
    """catdog's cache of `folder`'s photos as the tutorial prepares them (gray, `resolution` px): its arrays."""
    settings = dict(
        source=str(folder), resolution=resolution, channels=1, cache_dir=str(cache_dir), progress=False
    )
    return prepare_dataset(DataSettings.from_config(settings))


def time_catdog(folder: Path, resolution: int, cache_dir: Path) -> tuple[float, int]:
    """(seconds, images) of prepare_dataset into an empty cache directory: listing, decoding and cache writes."""
    shutil.rmtree(cache_dir, ignore_errors=True)
    start = time.perf_counter()
    arrays = prepare_gray(folder, resolution, cache_dir)
    return time.perf_counter() - start, len(arrays.labels)


def compare_preprocessing(archive: Path, workdir: Path, resolution: int = 50, repeats: int = 2) -> dict:
    """Best-of-`repeats` images/s of the baseline and of catdog on the same extracted photos, and their ratio."""
    folder = extract_cat_dog(archive, workdir / "images")
    read_all(folder)
    runs = {"baseline": [], "catdog": []}
    for _ in range(repeats):  # interleaved, so a burst of load elsewhere hits both
        runs["baseline"].append(time_baseline(folder, resolution, workdir / "baseline.npy"))
        runs["catdog"].append(time_catdog(folder, resolution, workdir / "cache"))
    result = {"archive": archive.name}
    for name, timings in runs.items():
        seconds, images = min(timings)
        result[name] = {"seconds": seconds, "images": images, "images_per_s": images / seconds}
    result["ratio"] = result["catdog"]["images_per_s"] / result["baseline"]["images_per_s"]
    return result


@benchmark
def preprocessing() -> list[str]:
    """Photos to cached 50x50 grayscale arrays: catdog's prepare_dataset vs the tutorial's single-threaded loop."""
    lines = [
        "| data | images | baseline s | baseline img/s | catdog s | catdog img/s | speed-up | goal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, goal in PREPROCESSING_GOALS.items():
        archive = SHARED / "data" / name
        if not archive.exists() or not BASELINE.exists():
            lines.append(f"| {name} | skipped: {archive} or {BASELINE} is missing | | | | | | |")
            continue
        with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
            r = compare_preprocessing(archive, Path(tmp))
        b, c = r["baseline"], r["catdog"]
        verdict = "met" if r["ratio"] >= goal else "MISSED"
        lines.append(
            f"| {name} | {c['images']:,} | {b['seconds']:.2f} | {b['images_per_s']:,.0f} | {c['seconds']:.2f} "
            f"| {c['images_per_s']:,.0f} | **{r['ratio']:.2f}x** | >= {goal:g}x {verdict} |"
        )
        result(
            f"{name}: images/s vs the tutorial loop (x)",
            f"{r['ratio']:.2f}",
            goal=f">= {goal:g}",
            met=r["ratio"] >= goal,
            note=f"{c['seconds']:.2f} s against {b['seconds']:.2f} s",
        )
        print(f"{name}: catdog {r['ratio']:.2f}x the baseline's images/s (goal >= {goal:g}x)", flush=True)
    return lines
