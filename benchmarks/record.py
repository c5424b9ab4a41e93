"""The benchmark registry and record: `python -m benchmarks [NAMES...]` runs the registered benchmarks (all that
run by default when none are named), prints their Markdown and appends it to BENCHMARKS.md under a dated heading
with the machine's details (--no-record to only print)."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import statistics
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path

from catdog.run.provenance import git_state

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BASELINE = SHARED / "bench" / "tutorial_baseline.py"
RECORD = ROOT / "BENCHMARKS.md"
CODE_ROOT = ROOT  # the checkout whose commit each section records
BENCHMARKS: dict[str, Callable[[], list[str]]] = {}
ON_REQUEST: set[str] = set()  # benchmarks that run only when named (hours on a CPU)
TRAIN_OVERRIDES: list[str] = []  # --train: added to every train.py run of the benchmarks (e.g. trainer=gpu)
CHECKPOINTS: list[str] = []  # --ckpt: the trained models the deploy benchmarks measure (else they train one)


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


def mean_std(values: Sequence[float]) -> str:
    """`mean +- std` over seeds to 4 places; one value alone has no spread to give."""
    mean = statistics.fmean(values)
    return f"{mean:.4f} +- {statistics.stdev(values):.4f}" if len(values) > 1 else f"{mean:.4f}"


def benchmark(fn: Callable[[], list[str]] | None = None, *, by_default: bool = True):
    """Register `fn` under its name for `python -m benchmarks NAME`; by_default=False: only when named."""

    def register(f: Callable[[], list[str]]) -> Callable[[], list[str]]:
        BENCHMARKS[f.__name__] = f
        if not by_default:
            ON_REQUEST.add(f.__name__)
        return f

    return register(fn) if fn is not None else register


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
        if not args.no_record:
            header = (
                "" if RECORD.exists() else "# Benchmarks\n\nSections appended by `python -m benchmarks`.\n\n"
            )
            with open(RECORD, "a") as f:
                f.write(header + "\n".join(section) + "\n")
