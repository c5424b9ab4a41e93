"""Whole-process times of the light commands, as a user waits for them: best of several runs of each."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.preprocessing import extract_cat_dog, read_all
from benchmarks.record import BASELINE, ROOT, SHARED, benchmark, result

# goals of issue 11 on the 2-core CPU: (seconds at most, or a speed-up at least)
PREPARE_BUILT_CACHE_S = 1.0
TRAIN_HELP_S = 1.5
PREPARE_FULLRES_SPEEDUP = 3.0
RUNS = 3
TEST_SUITE_MIN = 3.0  # issue 26: `make test` on a 2-core machine


def best_wall_time(command: list[str], runs: int = RUNS) -> float:
    """The fastest of `runs` whole-process runs (seconds): the one least disturbed by other work."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def row(name: str, seconds: float, goal: float | None = None) -> str:
    """A table row; with a goal (seconds at most), whether it was met."""
    if goal is None:
        return f"| {name} | {seconds:.2f} | | |"
    return f"| {name} | {seconds:.2f} | <= {goal} s | {'met' if seconds <= goal else 'MISSED'} |"


@benchmark
def startup() -> list[str]:
    """`python -m catdog.prepare` on a built cache, `python train.py --help`, importing what a training run imports,
    and preparing the 600 full-size photos against the tutorial's whole script (`--skip-train`), each the best of 3
    whole-process runs."""
    archive = SHARED / "data" / "kaggle-train-fullres-600.zip"
    if not archive.exists() or not BASELINE.exists():
        return [f"skipped: {archive} or {BASELINE} is missing"]
    lines = ["| command | best of 3, s | goal | status |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        work = Path(tmp)
        folder = extract_cat_dog(archive, work / "images")
        read_all(folder)
        prepare = [sys.executable, "-m", "catdog.prepare", f"data.source={folder}"]
        fresh = [f"data.cache_dir={work / f'cache-{i}'}" for i in range(RUNS)]
        # a new cache dir per run: each run decodes the 600 photos
        catdog_times = []
        for cache in fresh:
            start = time.perf_counter()
            subprocess.run([*prepare, cache], cwd=ROOT, check=True, capture_output=True)
            catdog_times.append(time.perf_counter() - start)
        built = best_wall_time([*prepare, fresh[0]])
        out = work / "baseline.npy"
        baseline = best_wall_time(
            [sys.executable, str(BASELINE), str(folder), "--skip-train", "--out", str(out)]
        )
    helps = best_wall_time([sys.executable, str(ROOT / "train.py"), "--help"])
    # what every training run, sweep job and `make test`'s ~100 command runs pay before their first step
    imports = best_wall_time([sys.executable, "-c", "import catdog.run.training"])
    speedup = baseline / min(catdog_times)
    lines += [
        row("python -m catdog.prepare, cache already built", built, PREPARE_BUILT_CACHE_S),
        row("python train.py --help", helps, TRAIN_HELP_S),
        row("python -c 'import catdog.run.training' (torch, Lightning)", imports),
        row("python -m catdog.prepare, 600 full-size photos", min(catdog_times)),
        row("tutorial_baseline.py --skip-train, same photos", baseline),
    ]
    result(
        "python -m catdog.prepare on a built cache (s)",
        f"{built:.2f}",
        goal=f"<= {PREPARE_BUILT_CACHE_S:g}",
        met=built <= PREPARE_BUILT_CACHE_S,
    )
    result(
        "python train.py --help (s)", f"{helps:.2f}", goal=f"<= {TRAIN_HELP_S:g}", met=helps <= TRAIN_HELP_S
    )
    result("importing a training run's modules (s)", f"{imports:.2f}")
    result(
        "preparing 600 full-size photos vs the tutorial script (x)",
        f"{speedup:.2f}",
        goal=f">= {PREPARE_FULLRES_SPEEDUP:g}",
        met=speedup >= PREPARE_FULLRES_SPEEDUP,
        note=f"{min(catdog_times):.2f} s against {baseline:.2f} s",
    )
    verdict = "met" if speedup >= PREPARE_FULLRES_SPEEDUP else "MISSED"
    goal = f"goal >= {PREPARE_FULLRES_SPEEDUP:g}x"
    return [
        *lines,
        "",
        f"Preparing the 600 full-size photos, whole process: {speedup:.2f}x the tutorial script "
        f"({goal}): {verdict}.",
    ]


def timed_suite(cold: bool, pytest_args: str = "") -> tuple[float, float, str]:
    """`make test` in this tree with this interpreter (its install taken as done): wall minutes, CPU minutes of
    everything it ran, pytest's summary line; cold: every command the tests run in a new interpreter
    (CATDOG_TEST_COLD_PYTHON=1, tests/warm_python.py); pytest_args: make's PYTEST_ARGS (a selection)."""
    env = {**os.environ, "CATDOG_TEST_COLD_PYTHON": "1" if cold else "0"}
    make = ["make", "-s", "-o", ".venv/.installed", f"BIN={Path(sys.executable).parent}", "test"]
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [*make, f"PYTEST_ARGS={pytest_args}"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    summary = re.findall(r"^=*\s*(\d+ (?:passed|failed).*?)\s*=*$", proc.stdout, re.M)
    return wall / 60, used / 60, summary[-1] if summary else f"no summary (exit {proc.returncode})"


@benchmark(by_default=False)
def test_suite() -> list[str]:
    """`make test`, as CI runs it (its pytest command, 2 workers on 2 cores), with the CLI tests' commands forked
    from a warm interpreter (the default) and each in a new interpreter, as before."""
    lines = [
        "| commands the tests run | wall, min | CPU, min | tests | goal | status |",
        "|---|---|---|---|---|---|",
    ]
    for cold, name in ((False, "forked from a warm interpreter"), (True, "each in a new interpreter")):
        wall, cpu, summary = timed_suite(cold)
        status = "met" if wall <= TEST_SUITE_MIN else "MISSED"
        goal = f"<= {TEST_SUITE_MIN:g} min" if not cold else ""
        result(
            f"make test, commands {name} (min)",
            f"{wall:.2f}",
            goal=f"<= {TEST_SUITE_MIN:g}" if not cold else "",
            met=None if cold else wall <= TEST_SUITE_MIN,
            note=f"{summary}; {cpu:.1f} CPU-minutes",
        )
        lines.append(
            f"| {name} | {wall:.2f} | {cpu:.2f} | {summary} | {goal} | {status if not cold else ''} |"
        )
    return lines
