"""Longer runs (issue 47): what a schedule does past its old end, judged on val. A `fast` run trained for half its
epochs is taken on two ways: `ckpt_path=last trainer.max_epochs=<all>` (catdog's choice: one-cycle re-planned for
the new length from the step reached), and a fresh one-cycle over the added epochs alone (`init_from` its last
checkpoint: a warm restart, the alternative), with the run planned for all its epochs from the start as the
reference; test is not scored."""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.record import SHARED, bench_seeds, benchmark, mean_std, result, seed_range
from benchmarks.training import read_metrics, run_training

SEEDS = bench_seeds([30, 31, 32])  # seeds whose test splits no preset was scored on
EPOCHS = 6  # the extended run goes from EPOCHS // 2 to EPOCHS
# experiment=fast at 32 px (a quarter of its pixels: minutes a seed) with the speed settings fixed, not measured
NOTE = "experiment=fast at 32 px"
COMMON = ["experiment=fast", "data.resolution=32", "test=false", "model.channels_last=true", "threads=2"]


def seed_runs(
    source: Path, seed: int, work: Path, overrides: list[str] = COMMON, epochs: int = EPOCHS
) -> dict[str, float]:
    """Best val accuracy of the run of epochs // 2, of it restarted for the rest, of it extended to `epochs`, and of
    the run planned for `epochs` (one decoded cache under `work`)."""
    data = [f"seed={seed}", f"data.source={source}", f"data.cache_dir={work / 'cache'}"]
    short, _ = run_training(work, "extended", *overrides, *data, f"trainer.max_epochs={epochs // 2}")
    scores = {"short": read_metrics(short)["val/acc_best"]}
    rest = f"trainer.max_epochs={epochs - epochs // 2}"
    start = f"init_from={short / 'checkpoints' / 'last.ckpt'}"
    restarted, _ = run_training(work, "restarted", *overrides, *data, start, rest)
    scores["restarted"] = read_metrics(restarted)["val/acc_best"]
    extended, _ = run_training(work, "extended", "ckpt_path=last", f"trainer.max_epochs={epochs}")
    scores["extended"] = read_metrics(extended)["val/acc_best"]
    planned, _ = run_training(work, "planned", *overrides, *data, f"trainer.max_epochs={epochs}")
    scores["planned"] = read_metrics(planned)["val/acc_best"]
    print(f"seed {seed}: {scores}", flush=True)
    return scores


def seed_runs_in_tmp(archive: Path, seed: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="catdog-longer-") as tmp:
        return seed_runs(archive, seed, Path(tmp))


@benchmark
def longer_runs() -> list[str]:
    """Best val accuracy of `fast` at 32 px: EPOCHS // 2 epochs, those restarted or extended to EPOCHS, and EPOCHS
    planned."""
    archive = SHARED / "data" / "PetImages-180.zip"
    if not archive.exists():
        return [f"skipped: {archive} is missing"]
    runs = {seed: seed_runs_in_tmp(archive, seed) for seed in SEEDS}
    seeds = seed_range(SEEDS)
    names = {
        "short": f"{EPOCHS // 2} epochs",
        "restarted": f"{EPOCHS // 2} epochs, then a fresh one-cycle over {EPOCHS - EPOCHS // 2} more (init_from)",
        "extended": f"{EPOCHS // 2} epochs, then extended to {EPOCHS} (ckpt_path=last)",
        "planned": f"{EPOCHS} epochs planned",
    }
    lines = ["| seed | " + " | ".join(names.values()) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {s} | " + " | ".join(f"{r[k]:.4f}" for k in names) + " |" for s, r in runs.items()]
    for key, name in names.items():
        result(f"best val acc (%), {name}", mean_std([100 * r[key] for r in runs.values()], 2), seeds=seeds)
    lines.append("")
    for other in ("restarted", "planned"):
        gaps = [100 * (r["extended"] - r[other]) for r in runs.values()]
        result(f"extended - {other}, best val acc (points)", mean_std(gaps, 2), seeds=seeds, note=NOTE)
        lines.append(f"- extended - {other}: {mean_std(gaps, 2)} points of val accuracy (mean +- std)")
    return lines
