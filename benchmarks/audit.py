"""The cost of `python -m catdog.audit` on PetImages-180 against one `experiment=fast` run, side by side, and what
it flags (the top 100 are then judged by eye: README, "Audit your photos first")."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.record import ROOT, SHARED, bench_seeds, benchmark, mean_std, result, seed_range
from benchmarks.training import read_metrics, run_training

AUDIT_COST_GOAL = 6.0  # issue 29: the audit in at most 6x the wall time of one experiment=fast run
KEPT = (
    ROOT / "outputs" / "bench-audit"
)  # audit.csv, audit.html and audit.png of the last run, to judge by eye
# fresh seeds (test splits not scored while the fast recipe was chosen); BENCH_SEEDS=a,b,c to change them
EXCLUSION_SEEDS = bench_seeds([20, 21, 22])


def run_audit(run_dir: Path, *overrides: str) -> float:
    """`python -m catdog.audit` as a user would run it; its wall time in seconds."""
    _, launched = run_training(run_dir.parent, run_dir.name, *overrides, entry=("-m", "catdog.audit"))
    return time.time() - launched


def audit_cost(archive: Path, work: Path, kept: Path, extra: list[str] | None = None) -> list[str]:
    """Audit `archive` and train experiment=fast on it, each from a cold cache (preprocessing included); the
    Markdown rows, and the audit's files copied to `kept`. `extra`: overrides for both (tiny ones in tests)."""
    extra = extra or []
    audit_s = run_audit(
        work / "audit", f"data.source={archive}", f"data.cache_dir={work / 'cache-audit'}", *extra
    )
    started = time.time()
    run_training(
        work,
        "fast",
        "experiment=fast",
        f"data.source={archive}",
        f"data.cache_dir={work / 'cache-fast'}",
        *extra,
    )
    fast_s = time.time() - started
    kept.mkdir(parents=True, exist_ok=True)
    for name in ("audit.csv", "audit.html", "audit.png"):
        shutil.copy(work / "audit" / name, kept / name)
    with open(kept / "audit.csv", newline="", encoding="utf-8") as f:
        issues = Counter(row["issue"] for row in csv.DictReader(f))
    ratio = audit_s / fast_s
    flagged = sum(n for kind, n in issues.items() if kind)
    result(
        "audit time vs one experiment=fast run (x)",
        f"{ratio:.2f}",
        goal=f"<= {AUDIT_COST_GOAL:g}",
        met=ratio <= AUDIT_COST_GOAL,
        note=f"{audit_s / 60:.1f} min against {fast_s / 60:.1f}; "
        + ", ".join(f"{n:,} {k}" for k, n in issues.items() if k),
    )
    print(
        f"audit: {audit_s / 60:.1f} min, {ratio:.2f}x one experiment=fast run; {flagged} flagged", flush=True
    )
    return [
        "| run | minutes (launch to exit, preprocessing included) |",
        "|---|---|",
        f"| python -m catdog.audit (defaults: configs/audit.yaml) | {audit_s / 60:.1f} |",
        f"| python train.py experiment=fast | {fast_s / 60:.1f} |",
        "",
        f"Goal: the audit within {AUDIT_COST_GOAL:g}x one fast run: **{ratio:.2f}x**, "
        f"{'met' if ratio <= AUDIT_COST_GOAL else 'MISSED'}.",
        "",
        "Flagged: "
        + ", ".join(f"{issues[k]:,} {k}" for k in ("label", "outlier", "duplicate", "conflict"))
        + f" of {sum(issues.values()):,} photos. The top 100 rows of {kept / 'audit.csv'} are to be judged by eye "
        "(really mislabeled, neither a cat nor a dog, or both; goal: at least 60).",
    ]


@benchmark(by_default=False)
def audit() -> list[str]:
    """`python -m catdog.audit` on PetImages-180.zip (5 folds of the fast net at 48 px) and one
    `python train.py experiment=fast`, one after the other, each from a cold cache; the audit's files are kept in
    outputs/bench-audit/ (run only when named: `make bench ARGS=audit`)."""
    archive = SHARED / "data" / "PetImages-180.zip"
    if not archive.exists():
        return [f"skipped: {archive} is missing"]
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        return audit_cost(archive, Path(tmp), KEPT)


def scored_both_ways(run_dir: Path, exclusions: Path) -> dict:
    """`python -m catdog.evaluate` on the run's best checkpoint with data.exclude=`exclusions`: test/acc without
    the flagged photos, test/acc_all with them, on the same test split (photos keep their split when others are
    excluded, so both runs' test splits hold the same photos)."""
    (best,) = [p for p in (run_dir / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt"]
    out = run_dir / "scored"
    command = [sys.executable, "-m", "catdog.evaluate", f"ckpt_path={best}", f"data.exclude={exclusions}"]
    proc = subprocess.run([*command, f"hydra.run.dir={out}"], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"evaluate data.exclude={exclusions} on {best} failed:\n{proc.stderr[-3000:]}")
    metrics = read_metrics(out)
    return {"clean": metrics["test/acc"], "all": metrics.get("test/acc_all", metrics["test/acc"])}


def exclusion_runs(archive: Path, exclusions: Path, seeds: list[int], extra: list[str]) -> list[str]:
    """experiment=fast with and without data.exclude=`exclusions` for each seed, each scored both ways; the
    Markdown rows."""
    rows, results = [], {"without": [], "with": []}
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        work = Path(tmp)
        for seed in seeds:
            for arm, added in (("without", []), ("with", [f"data.exclude={exclusions}"])):
                run_dir, _ = run_training(
                    work,
                    f"{arm}-{seed}",
                    "experiment=fast",
                    f"seed={seed}",
                    f"data.source={archive}",
                    f"data.cache_dir={work / 'cache'}",
                    *added,
                    *extra,
                )
                scored = scored_both_ways(run_dir, exclusions)
                results[arm].append(scored)
                rows.append(f"| {seed} | {arm} | {scored['all']:.4f} | {scored['clean']:.4f} |")
                print(f"seed {seed}, {arm} exclusions: {scored}", flush=True)

    for arm, scored in results.items():
        for photos, key in (("all test photos", "all"), ("flagged test photos removed", "clean")):
            values = [100 * r[key] for r in scored]
            result(
                f"test accuracy, {photos}, trained {arm} exclusions (%)",
                mean_std(values, 2),
                seeds=seed_range(seeds),
            )
    return [
        f"Exclusions: the rows of {exclusions.name} whose `issue` is not empty.",
        "",
        "| seed | trained | test acc, all test photos | test acc, flagged photos removed |",
        "|---|---|---|---|",
        *rows,
        *(
            f"| mean +- std | {arm} | {mean_std([r['all'] for r in results[arm]])} | "
            f"{mean_std([r['clean'] for r in results[arm]])} |"
            for arm in results
        ),
    ]


@benchmark(by_default=False)
def exclusions() -> list[str]:
    """`python train.py experiment=fast` on PetImages-180.zip with and without `data.exclude=` the audit's
    flags (outputs/bench-audit/audit.csv from `make bench ARGS=audit`), 3 fresh seeds, the test split scored with
    and without the flagged photos (run only when named: `make bench ARGS=exclusions`)."""
    archive = SHARED / "data" / "PetImages-180.zip"
    if not archive.exists():
        return [f"skipped: {archive} is missing"]
    flags = KEPT / "audit.csv"
    if not flags.exists():
        return [f"skipped: {flags} is missing (run `make bench ARGS=audit` first)"]
    return exclusion_runs(archive, flags, EXCLUSION_SEEDS, [])
