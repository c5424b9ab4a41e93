"""The benchmark registry and record: `python -m benchmarks [NAMES...]` runs the registered benchmarks (all that
run by default when none are named), prints their Markdown and appends their rows (one per measured metric, with
the date, commit, CPU and GPU) to results/<benchmark>.csv (--no-record to only print; --log also appends the
Markdown to docs/benchmark-log.md). `python -m benchmarks.results` turns the rows into RESULTS.md."""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import re
import statistics
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path

from benchmarks.results import COLUMNS
from catdog.io import replace_atomic, write_csv
from catdog.run.provenance import git_state

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BASELINE = SHARED / "bench" / "tutorial_baseline.py"
RESULTS = ROOT / "results"  # <benchmark>.csv: the rows, COLUMNS
LOG = ROOT / "docs" / "benchmark-log.md"  # the narrative, with --log
# files the record writes or regenerates: their changes do not make the tree dirty
RECORD_FILES = ("results", "RESULTS.md", "README.md", "docs/benchmark-log.md")
CODE_ROOT = ROOT  # the checkout whose commit each row records
BENCHMARKS: dict[str, Callable[[], list[str]]] = {}
ON_REQUEST: set[str] = set()  # benchmarks that run only when named (hours on a CPU)
TRAIN_OVERRIDES: list[str] = []  # --train: added to every train.py run of the benchmarks (e.g. trainer=gpu)
CHECKPOINTS: list[str] = []  # --ckpt: the trained models the deploy benchmarks measure (else they train one)
MEASURED: list[dict[str, str]] = []  # the running benchmark's rows, from result()


def bench_seeds(default: Sequence[int]) -> list[int]:
    """The seeds a benchmark runs: BENCH_SEEDS=10,11,12 (e.g. fresh seeds for a frozen recipe), else `default`."""
    value = os.environ.get("BENCH_SEEDS", "").strip()
    if not value:
        return list(default)
    try:
        return [int(s) for s in value.split(",")]
    except ValueError:
        raise SystemExit(
            f"error: BENCH_SEEDS={value!r} is not a list of integers: write it as BENCH_SEEDS=10,11,12"
        ) from None


def mean_std(values: Sequence[float], places: int = 4) -> str:
    """`mean +- std` over seeds to `places` places; one value alone has no spread to give."""
    mean = statistics.fmean(values)
    spread = f" +- {statistics.stdev(values):.{places}f}" if len(values) > 1 else ""
    return f"{mean:.{places}f}{spread}"


def benchmark(fn: Callable[[], list[str]] | None = None, *, by_default: bool = True):
    """Register `fn` under its name for `python -m benchmarks NAME`; by_default=False: only when named."""

    def register(f: Callable[[], list[str]]) -> Callable[[], list[str]]:
        BENCHMARKS[f.__name__] = f
        if not by_default:
            ON_REQUEST.add(f.__name__)
        return f

    return register(fn) if fn is not None else register


def result(
    metric: str, value: str, *, goal: str = "", met: bool | None = None, seeds: str = "", note: str = ""
) -> None:
    """One row of the record for the running benchmark: `metric` with its unit ("test accuracy (%)"), `value` a
    number or "mean +- std", `goal` as ">= 94.5", `met` whether it was reached (None: no goal, "measured"), `seeds` as
    "10-12", `note` a few words; main() adds the date, commit and machine."""
    verdict = "measured" if met is None else "met" if met else "MISSED"
    MEASURED.append(dict(seeds=seeds, metric=metric, value=value, goal=goal, met=verdict, note=note))


def seed_range(seeds: Sequence[int]) -> str:
    """ "10-12" for consecutive seeds, else "0,2,5"."""
    seeds = list(seeds)
    consecutive = len(seeds) > 1 and seeds == list(range(seeds[0], seeds[0] + len(seeds)))
    return f"{seeds[0]}-{seeds[-1]}" if consecutive else ",".join(map(str, seeds))


def load_average() -> str:
    """Other work on the machine slows both contenders, the parallel one most: recorded before and after."""
    return (
        "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
        if hasattr(os, "getloadavg")
        else "load unknown"
    )


def gpu_name() -> str:
    """The GPU's name, "" without one."""
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else ""


def accelerator() -> str:
    return f"GPU: {gpu_name()}" if gpu_name() else "no GPU"


def cpu_model() -> str:
    """The CPU's model, family and model numbers where /proc/cpuinfo gives them (a VM may hide the rest of the
    name: the family and model tell its generation), and the count: "AMD EPYC (family 25 model 17), 2 CPUs"."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields = {
        key: found.group(1).strip()
        for key in ("model name", "cpu family", "model")
        if (found := re.search(rf"^{key}\s*:\s*(.+)$", info, re.M))
    }
    model = fields.get("model name", platform.processor() or "unknown CPU")
    if "cpu family" in fields and "model" in fields:
        model += f" (family {fields['cpu family']} model {fields['model']})"
    return f"{model}, {os.cpu_count()} CPUs"


def machine() -> str:
    """CPU count and model, load, and the versions that decide the speed."""
    return (
        f"{cpu_model()} ({load_average()}), {accelerator()}; {platform.system()} {platform.machine()}; "
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


def short_commit(state: dict) -> str:
    """The commit column: 7 hex digits, " DIRTY" after them for uncommitted changes, "unknown" outside a checkout."""
    if state["git_commit"] is None:
        return "unknown"
    return state["git_commit"][:7] + (" DIRTY" if state["git_dirty"] else "")


def append_rows(path: Path, rows: list[dict[str, str]]) -> None:
    """The rows after the file's own (the header first in a new file), the whole file replaced at once."""
    old = []
    if path.exists():
        with open(path, newline="") as f:
            old = list(csv.reader(f))[1:]
    path.parent.mkdir(parents=True, exist_ok=True)
    new = [[row[c] for c in COLUMNS] for row in rows]
    replace_atomic(path, lambda f: write_csv(f, COLUMNS, old + new), binary=False)


def variant(overrides: Sequence[str]) -> str:
    """What --train changed in the runs, as a metric's suffix: trainer=gpu only picks the machine (the gpu column
    says so), anything else is another recipe, so another goal row."""
    changed = [o for o in overrides if o != "trainer=gpu"]
    return f" [{' '.join(changed)}]" if changed else ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (all)"
    )
    parser.add_argument(
        "--no-record", action="store_true", help="print only; do not append rows to results/<benchmark>.csv"
    )
    parser.add_argument(
        "--log", action="store_true", help="also append the printed Markdown to docs/benchmark-log.md"
    )
    parser.add_argument("--note", default="", help="a few words added to the note of every row of this run")
    parser.add_argument(
        "--train",
        action="append",
        default=[],
        metavar="OVERRIDE",
        help="a train.py override for the benchmarks that train, e.g. --train trainer=gpu (repeatable)",
    )
    parser.add_argument(
        "--ckpt",
        action="append",
        default=[],
        metavar="FILE",
        help="a checkpoint for the deploy and serve benchmarks (repeatable; default: train experiment=fast)",
    )
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="record even with uncommitted changes (each section is then marked DIRTY)",
    )
    args = parser.parse_args(argv)
    TRAIN_OVERRIDES[:] = args.train
    CHECKPOINTS[:] = args.ckpt
    # the record itself is no code: its own new rows do not make the tree dirty
    state = git_state(CODE_ROOT, exclude=RECORD_FILES)
    if state["git_dirty"] and not args.no_record and not args.allow_dirty:
        parser.error(
            f"{CODE_ROOT} has uncommitted changes, so a recorded result would name no commit that reproduces "
            "it: commit them, or pass --allow-dirty (sections marked DIRTY) or --no-record."
        )
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    for name in args.names or [n for n in BENCHMARKS if n not in ON_REQUEST]:
        now = datetime.datetime.now(datetime.UTC)
        stamp = now.strftime("%Y-%m-%d %H:%M UTC")
        print(f"running benchmark {name!r} ...", flush=True)
        dirty = " (DIRTY)" if state["git_dirty"] else ""
        MEASURED.clear()
        section = [
            f"## {stamp}: {name}{dirty}",
            "",
            BENCHMARKS[name].__doc__ or "",
            "",
            code_line(state),
            "",
            f"Machine: {machine()}",
            "",
            *([f"train.py overrides added: `{' '.join(args.train)}`", ""] if args.train else []),
            *BENCHMARKS[name](),
            "",
            f"After the run: {load_average()}",
            "",
        ]
        print("\n".join(section))
        if args.no_record:
            continue
        common = dict(
            date=now.strftime("%Y-%m-%d %H:%M"), commit=short_commit(state), cpu=cpu_model(), gpu=gpu_name()
        )
        rows = [
            {
                **common,
                **row,
                "metric": row["metric"] + variant(args.train),
                "note": "; ".join(filter(None, (row["note"], args.note))),
            }
            for row in MEASURED
        ]
        if rows:
            append_rows(RESULTS / f"{name}.csv", rows)
            print(f"{len(rows)} row(s) appended to {RESULTS / f'{name}.csv'}: `make results` next")
        else:
            print(f"{name} measured nothing to record (skipped?)")
        if args.log:
            with open(LOG, "a") as f:
                f.write("\n".join(section) + "\n")
