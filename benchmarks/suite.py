"""Benchmarks against the tutorial's pipeline: `python -m benchmarks [NAMES...]` (all when none are named).

Each benchmark is a function registered with @benchmark; it returns Markdown lines, which are printed and
appended to BENCHMARKS.md under a dated heading with the machine's details (--no-record to only print).
The reference, ../shared/bench/tutorial_baseline.py, runs in a subprocess with the same Python, on the same
images, in the same run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from catdog.data.preprocess import prepare_dataset
from catdog.data.sources import find_images
from catdog.run.provenance import git_state

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BASELINE = SHARED / "bench" / "tutorial_baseline.py"
RECORD = ROOT / "BENCHMARKS.md"
CODE_ROOT = ROOT  # the checkout whose commit each section records
# archive in ../shared/data -> the speed-up over the baseline that preprocessing should reach
PREPROCESSING_GOALS = {"kaggle-train-fullres-600.zip": 3.0, "PetImages-180.zip": 2.0}
TRAINING_OVERHEAD_GOAL = 0.95  # catdog's training samples/s with default settings / the tutorial loop's
# the fast path, which should beat the default settings
FAST_PATH = ["data.loader=tensor", "model.channels_last=true", "trainer.precision=auto"]
TIME_TO_ACCURACY_GOALS = {"fast": (0.92, 15 * 60), "best": (0.965, None)}  # (val/acc, within seconds)
BENCHMARKS: dict[str, Callable[[], list[str]]] = {}
ON_REQUEST: set[str] = set()  # benchmarks that run only when named (hours on a CPU)
TRAIN_OVERRIDES: list[str] = []  # --train: added to every train.py run of the benchmarks (e.g. trainer=gpu)


def benchmark(fn: Callable[[], list[str]] | None = None, *, by_default: bool = True):
    """Register `fn` under its name for `python -m benchmarks NAME`; by_default=False: only when named."""

    def register(f: Callable[[], list[str]]) -> Callable[[], list[str]]:
        BENCHMARKS[f.__name__] = f
        if not by_default:
            ON_REQUEST.add(f.__name__)
        return f

    return register(fn) if fn is not None else register


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


def time_baseline(folder: Path, resolution: int, out: Path) -> tuple[float, int]:
    """(seconds, images) as printed by the baseline's own preprocessing timer."""
    proc = subprocess.run(
        [sys.executable, str(BASELINE), str(folder), "--skip-train", "--size", str(resolution), "--out", str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = re.search(r"preprocess_s=([\d.]+) n_images=(\d+)", proc.stdout)
    if found is None:
        raise SystemExit(f"unexpected baseline output: {proc.stdout}{proc.stderr}")
    return float(found.group(1)), int(found.group(2))


def time_catdog(folder: Path, resolution: int, cache_dir: Path) -> tuple[float, int]:
    """(seconds, images) of prepare_dataset into an empty cache directory: listing, decoding and cache writes."""
    shutil.rmtree(cache_dir, ignore_errors=True)
    start = time.perf_counter()
    arrays = prepare_dataset(
        str(folder), resolution=resolution, channels=1, cache_dir=str(cache_dir), progress=False
    )
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
        print(f"{name}: catdog {r['ratio']:.2f}x the baseline's images/s (goal >= {goal:g}x)", flush=True)
    return lines


def run_training(workdir: Path, name: str, *overrides: str) -> tuple[Path, float]:
    """Run `python train.py` as a user would; returns its run dir and the wall time it was launched at."""
    run_dir = workdir / name
    launched = time.time()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false",
         *overrides, *TRAIN_OVERRIDES],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"train.py {' '.join(overrides)} failed:\n{proc.stderr[-3000:]}")
    return run_dir, launched


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def baseline_training(folder: Path, out: Path) -> dict:
    """samples/s and val_acc of one epoch of the tutorial's own loop, as it prints them."""
    proc = subprocess.run(
        [sys.executable, str(BASELINE), str(folder), "--epochs", "1", "--out", str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = re.search(r"samples_per_s=(\d+) val_acc=([\d.]+)", proc.stdout)
    if found is None:
        raise SystemExit(f"unexpected baseline output: {proc.stdout}{proc.stderr}")
    return {"samples_per_s": float(found.group(1)), "val_acc": float(found.group(2))}


@benchmark
def training_overhead() -> list[str]:
    """The tutorial's net, batch size and data (PetImages-180, 50x50 gray): training samples/s of one epoch through
    catdog (default settings; the tensor data path; the whole fast path: tensor data, channels_last and
    trainer.precision=auto, i.e. bf16 where the chip has it) vs the tutorial's plain PyTorch loop; interleaved, best
    of 2, preprocessing excluded (both read prepared arrays)."""
    archive = SHARED / "data" / "PetImages-180.zip"
    if not archive.exists() or not BASELINE.exists():
        return [f"skipped: {archive} or {BASELINE} is missing"]
    contenders = {
        "tutorial loop": None,
        "catdog (default)": [],
        "catdog (data.loader=tensor)": ["data.loader=tensor"],
        "catdog fast path (+ channels_last, precision=auto)": FAST_PATH,
    }
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        work = Path(tmp)
        folder = extract_cat_dog(archive, work / "images")
        common = ["experiment=tutorial", f"data.source={folder}", f"data.cache_dir={work / 'cache'}",
                  "trainer.max_epochs=1"]  # fmt: skip
        prepare_dataset(str(folder), resolution=50, channels=1, cache_dir=str(work / "cache"), progress=False)
        for repeat in range(2):
            for i, (name, extra) in enumerate(contenders.items()):
                if extra is None:
                    result = baseline_training(folder, work / "baseline.npy")
                else:
                    run_dir, _ = run_training(work, f"run-{repeat}-{i}", *common, *extra)
                    m = read_metrics(run_dir)
                    result = {"samples_per_s": m["perf/train_samples_per_s"], "val_acc": m["val/acc"]}
                if name not in best or result["samples_per_s"] > best[name]["samples_per_s"]:
                    best[name] = result
    reference = best["tutorial loop"]["samples_per_s"]
    lines = ["| contender | samples/s | vs tutorial loop | val acc after 1 epoch |", "|---|---|---|---|"]
    for name, r in best.items():
        lines.append(f"| {name} | {r['samples_per_s']:,.0f} | **{r['samples_per_s'] / reference:.2f}x** "
                     f"| {r['val_acc']:.3f} |")  # fmt: skip
    ratio = best["catdog (default)"]["samples_per_s"] / reference
    fast = best["catdog fast path (+ channels_last, precision=auto)"]["samples_per_s"] / reference
    lines += [
        "",
        f"Goals: catdog (default) >= {TRAINING_OVERHEAD_GOAL}x the tutorial loop: {ratio:.2f}x, "
        f"{'met' if ratio >= TRAINING_OVERHEAD_GOAL else 'MISSED'}; the fast path faster than that: {fast:.2f}x, "
        f"{'met' if fast > ratio else 'MISSED'}.",
    ]
    print(f"training overhead: catdog {ratio:.2f}x the tutorial loop's samples/s", flush=True)
    return lines


PRECISION_CONTENDERS = {
    "float32": ["trainer.precision=32-true", "model.channels_last=false"],
    "float32 + channels_last": ["trainer.precision=32-true"],
    "precision=auto + channels_last (the preset)": [],
    "precision=auto + channels_last + torch.compile": ["model.compile=true"],
}


@benchmark
def precision() -> list[str]:
    """`experiment=fast`'s net and data (PetImages-180, 64x64 RGB): training samples/s of its second epoch (after any
    compilation) in float32, with channels_last, with trainer.precision=auto (bf16 where the chip has it natively)
    and with torch.compile; 60 batches an epoch, one run each, in one session."""
    archive = SHARED / "data" / "PetImages-180.zip"
    if not archive.exists():
        return [f"skipped: {archive} is missing"]
    rates = {}
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        work = Path(tmp)
        common = ["experiment=fast", f"data.source={archive}", f"data.cache_dir={work / 'cache'}",
                  "trainer.max_epochs=2", "trainer.limit_train_batches=60", "trainer.limit_val_batches=2"]  # fmt: skip
        for i, (name, extra) in enumerate(PRECISION_CONTENDERS.items()):
            run_dir, _ = run_training(work, f"run-{i}", *common, *extra)
            rates[name] = read_metrics(run_dir)["perf/train_samples_per_s"]
    reference = rates["float32"]
    lines = ["| settings | samples/s | vs float32 |", "|---|---|---|"]
    lines += [f"| {name} | {rate:,.0f} | **{rate / reference:.2f}x** |" for name, rate in rates.items()]
    print(f"precision: the preset's settings {rates['precision=auto + channels_last (the preset)'] / reference:.2f}x "
          "float32", flush=True)  # fmt: skip
    return lines


def accuracy_curve(run_dir: Path, launched: float) -> list[tuple[int, float, float]]:
    """(epoch, seconds since launch, val/acc) from the run's TensorBoard events: preprocessing included."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [(i + 1, e.wall_time - launched, e.value) for i, e in enumerate(events.Scalars("val/acc"))]


def plot_curves(curves: dict[str, list[tuple[int, float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in curves.items():
        ax.plot([p[1] / 60 for p in points], [p[2] for p in points], marker="o", label=f"experiment={name}")
        goal, _ = TIME_TO_ACCURACY_GOALS[name]
        ax.axhline(goal, linestyle=":", color=ax.lines[-1].get_color())
    ax.set(xlabel="wall-clock minutes since launch (preprocessing included)", ylabel="validation accuracy",
           title="catdog: time to accuracy on PetImages-180")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def time_to_accuracy(experiment: str) -> list[str]:
    archive = SHARED / "data" / "PetImages-180.zip"
    if not archive.exists():
        return [f"skipped: {archive} is missing"]
    goal, within = TIME_TO_ACCURACY_GOALS[experiment]
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        work = Path(tmp)
        run_dir, launched = run_training(
            work,
            experiment,
            f"experiment={experiment}",
            f"data.source={archive}",
            f"data.cache_dir={work / 'cache'}",
        )
        curve = accuracy_curve(run_dir, launched)
        total = time.time() - launched
    plot = ROOT / "docs" / f"time_to_accuracy_{experiment}.png"
    plot_curves({experiment: curve}, plot)
    lines = ["| epoch | minutes since launch | val acc |", "|---|---|---|"]
    lines += [f"| {epoch} | {seconds / 60:.1f} | {acc:.4f} |" for epoch, seconds, acc in curve]
    reached = next((s for _, s, acc in curve if acc >= goal), None)
    met = reached is not None and (within is None or reached <= within)
    when = f"after {reached / 60:.1f} min" if reached is not None else "not reached"
    lines += ["", f"Whole run: {total / 60:.1f} min. Goal: val acc >= {goal}"
              + (f" within {within / 60:.0f} min" if within else "") + f": {when}, {'met' if met else 'MISSED'}.",
              "", f"![time to accuracy](docs/{plot.name})"]  # fmt: skip
    print(f"experiment={experiment}: best val acc {max(a for *_, a in curve):.4f}, goal {when}", flush=True)
    return lines


@benchmark
def time_to_accuracy_fast() -> list[str]:
    """`python train.py experiment=fast` on PetImages-180.zip from a cold cache: validation accuracy against
    wall-clock time since launch (preprocessing included)."""
    return time_to_accuracy("fast")


@benchmark(by_default=False)
def time_to_accuracy_best() -> list[str]:
    """`python train.py experiment=best` on PetImages-180.zip from a cold cache (an hour on a 2-core CPU, so it runs
    only when named: `python -m benchmarks time_to_accuracy_best`)."""
    return time_to_accuracy("best")


def load_average() -> str:
    """Other work on the machine slows both contenders, the parallel one most: recorded before and after."""
    return (
        "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
        if hasattr(os, "getloadavg")
        else "load unknown"
    )


def accelerator() -> str:
    import torch

    return f"GPU: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no GPU"


def machine() -> str:
    """CPU count and model, load, and the versions that decide the speed."""
    model = "unknown CPU"
    if Path("/proc/cpuinfo").exists():
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        model = found.group(1).strip() if found else model
    load = f" ({load_average()})"
    return (
        f"{os.cpu_count()} CPUs, {model}{load}, {accelerator()}; {platform.system()} {platform.machine()}; "
        f"Python {platform.python_version()}, torch {version('torch')}, OpenCV {version('opencv-python-headless')}, "
        f"numpy {version('numpy')}"
    )


def code_line(state: dict) -> str:
    """The commit a section measured, marked DIRTY (with the hash of `git diff HEAD`) for uncommitted changes."""
    if state["git_commit"] is None:
        return "Commit: unknown (not a git checkout)"
    if state["git_dirty"]:
        return f"Commit: {state['git_commit']} DIRTY (uncommitted changes, diff sha256 {state['git_diff_sha256']})"
    return f"Commit: {state['git_commit']}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (all)"
    )
    parser.add_argument(
        "--no-record", action="store_true", help=f"print only; do not append to {RECORD.name}"
    )
    parser.add_argument(
        "--train", action="append", default=[], metavar="OVERRIDE",
        help="a train.py override for the benchmarks that train, e.g. --train trainer=gpu (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="record even with uncommitted changes (each section is then marked DIRTY)",
    )
    args = parser.parse_args(argv)
    TRAIN_OVERRIDES[:] = args.train
    # the record itself is no code: its own new sections do not make the tree dirty
    state = git_state(CODE_ROOT, exclude=(RECORD.name,))
    if state["git_dirty"] and not args.no_record and not args.allow_dirty:
        parser.error(
            f"{CODE_ROOT} has uncommitted changes, so a recorded result would name no commit that reproduces "
            "it: commit them, or pass --allow-dirty (sections marked DIRTY) or --no-record."
        )
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    for name in args.names or [n for n in BENCHMARKS if n not in ON_REQUEST]:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        print(f"running benchmark {name!r} ...", flush=True)
        dirty = " (DIRTY)" if state["git_dirty"] else ""
        section = [f"## {stamp}: {name}{dirty}", "", BENCHMARKS[name].__doc__ or "", "", code_line(state), "",
                   f"Machine: {machine()}", "",
                   *([f"train.py overrides added: `{' '.join(args.train)}`", ""] if args.train else []),
                   *BENCHMARKS[name](), "", f"After the run: {load_average()}", ""]  # fmt: skip
        print("\n".join(section))
        if not args.no_record:
            header = (
                "" if RECORD.exists() else "# Benchmarks\n\nSections appended by `python -m benchmarks`.\n\n"
            )
            with open(RECORD, "a") as f:
                f.write(header + "\n".join(section) + "\n")


if __name__ == "__main__":
    main()
