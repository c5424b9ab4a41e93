"""Scale: prepare's time per photo and peak memory, the near-duplicate search and a training epoch's images/s from
the memory-mapped cache, from 25,000 to 400,000 unique synthetic photos (generated once and kept)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from benchmarks.record import ROOT, benchmark, result
from benchmarks.training import read_metrics, run_training
from catdog.data.cache import load_cache
from catdog.data.duplicates import exhaustive_pairs, near_pairs

SIZES = (25_000, 100_000, 400_000)
EXHAUSTIVE_AT = 100_000  # the exhaustive search is timed here and extrapolated by the square
PHOTO_PX, RESOLUTION = 128, 64
# the Goals: prepare's time per photo and peak RSS at the largest size over the smallest's, the near-duplicate
# search's share of the exhaustive one's (extrapolated) time, an epoch's images/s at the largest over the smallest's
GOALS = {"time per photo": 1.3, "peak RSS": 1.5, "near-duplicate search": 1 / 20, "epoch images/s": 0.8}
CLASSES = ("circles", "squares")


def data_root() -> Path:
    """Where the generated photos and their caches are kept between runs: outside the checkout."""
    return Path(os.environ.get("CATDOG_BENCH_DATA", Path.home() / ".cache" / "catdog" / "bench")) / "scale"


def synthetic_photo(i: int, size: int = PHOTO_PX) -> np.ndarray:
    """Photo i: 1-3 filled shapes of class i % 2 (circles or squares) on a smooth random background, with sensor
    noise; a function of i alone, and unique."""
    rng = np.random.default_rng(i)
    low = rng.integers(0, 256, (4, 4, 3)).astype(np.float32)
    img = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(1, 4))):
        color = [float(c) for c in rng.integers(0, 256, 3)]
        x, y = (int(v) for v in rng.integers(size // 5, 4 * size // 5, 2))
        r = int(rng.integers(size // 10, size // 4))
        if i % 2 == 0:
            cv2.circle(img, (x, y), r, color, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(img, (x - r, y - r), (x + r, y + r), color, -1)
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_photos(task: tuple[Path, int, int]) -> None:
    folder, start, stop = task
    for i in range(start, stop):
        path = folder / CLASSES[i % 2] / f"{i:07d}.jpg"
        if not path.exists():
            cv2.imwrite(str(path), synthetic_photo(i), [cv2.IMWRITE_JPEG_QUALITY, 90])


def photo_folder(root: Path, n: int, workers: int = os.cpu_count() or 1) -> Path:
    """root/n<n>/<class>/<i>.jpg for photos 0..n-1: hard links into root/photos, where each photo is made once."""
    pool, folder = root / "photos", root / f"n{n}"
    for c in CLASSES:
        (pool / c).mkdir(parents=True, exist_ok=True)
    step = 2000
    tasks = [(pool, s, min(s + step, n)) for s in range(0, n, step)]
    with get_context("fork").Pool(workers) as processes:
        processes.map(_write_photos, tasks)
    if not folder.exists():
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for i in range(n):
            name = Path(CLASSES[i % 2]) / f"{i:07d}.jpg"
            (tmp / name.parent).mkdir(parents=True, exist_ok=True)
            os.link(pool / name, tmp / name)
        os.rename(tmp, folder)
    return folder


# Starts a command and prints its peak RSS (KiB; its own and its reaped children's) on stderr. A process inherits
# the peak of the one it was forked from (the kernel keeps the forked memory's high-water mark across exec), so
# prepare is started from this small interpreter, not from the benchmark's, whose peak would be counted as its own.
LAUNCHER = """import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(p.pid, 0)
print(f"peak RSS KiB: {usage.ru_maxrss}", file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))"""


def peak_rss_run(command: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run `command` from LAUNCHER: the finished process (stdout, stderr captured) and its peak RSS in MB."""
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *command], cwd=ROOT, capture_output=True, text=True
    )
    found = re.search(r"^peak RSS KiB: (\d+)$", proc.stderr, re.M)
    if found is None:
        raise SystemExit(f"{' '.join(command)} ended without its peak RSS:\n{proc.stderr[-3000:]}")
    return proc, int(found.group(1)) * 1024 / 1e6


def timed_prepare(folder: Path, cache: Path, resolution: int) -> dict:
    """A cold `python -m catdog.prepare` of `folder` (files read once before, so the disk is no contender): its
    seconds, peak RSS (the largest of it and its decoding processes) and cache directory."""
    shutil.rmtree(cache, ignore_errors=True)
    for path in folder.rglob("*.jpg"):
        path.read_bytes()
    args = [f"data.source={folder}", f"data.cache_dir={cache}", f"data.resolution={resolution}"]
    start = time.perf_counter()
    command = [sys.executable, "-m", "catdog.prepare", *args, "data.channels=3", "data.progress=false"]
    proc, peak_mb = peak_rss_run(command)
    seconds = time.perf_counter() - start
    found = re.search(r"^cache: (.+)$", proc.stdout, re.M)
    if proc.returncode != 0 or found is None:
        raise SystemExit(
            f"catdog.prepare {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return {"seconds": seconds, "peak_rss_mb": peak_mb, "cache": Path(found.group(1))}


def near_duplicate_rows(hashes: np.ndarray, exhaustive_at: int) -> list[dict]:
    """near_pairs on every hash against the exhaustive search on the first `exhaustive_at` (extrapolated by the
    square), and whether both find the same pairs there."""
    start = time.perf_counter()
    near_pairs(hashes)
    indexed = time.perf_counter() - start
    start = time.perf_counter()
    exhaustive = exhaustive_pairs(hashes[:exhaustive_at])
    measured = time.perf_counter() - start
    same = np.array_equal(near_pairs(hashes[:exhaustive_at]), exhaustive)
    extrapolated = measured * (len(hashes) / exhaustive_at) ** 2
    share = indexed / extrapolated
    return [
        {"measure": "exhaustive search", "photos": exhaustive_at, "value": f"{measured:.2f} s"},
        {
            "measure": "exhaustive search (extrapolated)",
            "photos": len(hashes),
            "value": f"{extrapolated:.1f} s",
        },
        {
            "measure": "near-duplicate search",
            "photos": len(hashes),
            "value": f"{indexed:.2f} s: {share:.4f} of the exhaustive; pairs at {exhaustive_at:,} "
            + ("identical" if same else "DIFFERENT"),
            "goal": f"< {GOALS['near-duplicate search']:.2f} of the exhaustive, identical pairs",
            "met": share < GOALS["near-duplicate search"] and same,
        },
    ]


def epoch_images_per_s(cache_root: Path, folder: Path, resolution: int, overrides: tuple[str, ...]) -> float:
    """Training images/s of one epoch of experiment=fast read through the memory-mapped loader."""
    work = cache_root / "runs"
    run_dir, _ = run_training(
        work,
        folder.name,
        "experiment=fast",
        f"data.source={folder}",
        f"data.cache_dir={cache_root}",
        f"data.resolution={resolution}",
        "data.loader=dataloader",
        "trainer.max_epochs=1",
        "test=false",
        *overrides,
    )
    images_per_s = read_metrics(run_dir)["perf/train_samples_per_s"]
    shutil.rmtree(work, ignore_errors=True)
    return float(images_per_s)


def ratio_row(measure: str, small: int, large: int, ratio: float, goal: str, met: bool) -> dict:
    return {
        "measure": measure,
        "photos": f"{large:,} / {small:,}",
        "value": f"{ratio:.2f}x",
        "goal": goal,
        "met": met,
    }


def measure(
    sizes=SIZES,
    exhaustive_at: int = EXHAUSTIVE_AT,
    resolution: int = RESOLUTION,
    root: Path | None = None,
    train_overrides: tuple[str, ...] = (),
    prepare_only: bool = False,
) -> list[dict]:
    """Every measurement at `sizes` (with `prepare_only`, prepare's alone) as rows: measure, photos, value, and for
    the Goals goal and met."""
    root = root or data_root()
    rows, prepared = [], {}
    for n in sizes:
        folder = photo_folder(root, n)
        prepared[n] = timed_prepare(folder, root / f"cache-n{n}", resolution)
        p = prepared[n]
        rows += [
            {
                "measure": "prepare",
                "photos": n,
                "value": f"{p['seconds']:.1f} s, {p['seconds'] / n * 1e3:.3f} ms/photo",
            },
            {"measure": "prepare peak RSS", "photos": n, "value": f"{p['peak_rss_mb']:,.0f} MB"},
        ]
    small, large = min(sizes), max(sizes)
    per_photo = (prepared[large]["seconds"] / large) / (prepared[small]["seconds"] / small)
    rss = prepared[large]["peak_rss_mb"] / prepared[small]["peak_rss_mb"]
    rows += [
        ratio_row(
            "prepare time per photo",
            small,
            large,
            per_photo,
            f"<= {GOALS['time per photo']}x",
            per_photo <= GOALS["time per photo"],
        ),
        ratio_row(
            "prepare peak RSS", small, large, rss, f"<= {GOALS['peak RSS']}x", rss <= GOALS["peak RSS"]
        ),
    ]
    if prepare_only:
        return rows
    arrays = load_cache(prepared[large]["cache"])
    if arrays is None:
        raise SystemExit(f"the cache {prepared[large]['cache']} is gone")
    hashes = np.array([int(h, 16) for h in arrays.photos["phash"]], dtype=np.uint64)
    rows += near_duplicate_rows(hashes, exhaustive_at)
    speeds = {
        n: epoch_images_per_s(root / f"cache-n{n}", root / f"n{n}", resolution, train_overrides)
        for n in (small, large)
    }
    rows += [
        {"measure": "epoch images/s (memory-mapped)", "photos": n, "value": f"{s:,.0f}"}
        for n, s in speeds.items()
    ]
    epoch = speeds[large] / speeds[small]
    rows.append(
        ratio_row(
            "epoch images/s",
            small,
            large,
            epoch,
            f">= {GOALS['epoch images/s']}x",
            epoch >= GOALS["epoch images/s"],
        )
    )
    return rows


def markdown(rows: list[dict]) -> list[str]:
    """The rows as a Markdown table (goal and met empty where a row has no goal)."""
    lines = ["| measure | photos | value | goal | met |", "|---|---|---|---|---|"]
    for r in rows:
        photos = f"{r['photos']:,}" if isinstance(r["photos"], int) else r["photos"]
        met = "" if "met" not in r else ("met" if r["met"] else "MISSED")
        lines.append(f"| {r['measure']} | {photos} | {r['value']} | {r.get('goal', '')} | {met} |")
    return lines


@benchmark(by_default=False)
def scale() -> list[str]:
    """Prepare (128 px JPEGs to 64 px RGB), the near-duplicate search and a memory-mapped training epoch at 25,000,
    100,000 and 400,000 unique synthetic photos (kept in $CATDOG_BENCH_DATA, default ~/.cache/catdog/bench)."""
    # SCALE_PARTS=prepare: prepare's time and memory alone (minutes; the epochs take most of an hour on 2 cores)
    parts = os.environ.get("SCALE_PARTS", "")
    if parts not in ("", "prepare"):
        raise SystemExit(
            f"error: SCALE_PARTS={parts!r}: give SCALE_PARTS=prepare (prepare alone), or leave it unset"
        )
    rows = measure(prepare_only=parts == "prepare")
    for r in rows:
        photos = f"{r['photos']:,}" if isinstance(r["photos"], int) else r["photos"]
        result(f"{r['measure']}, {photos} photos", r["value"], goal=r.get("goal", ""), met=r.get("met"))
    return markdown(rows)
