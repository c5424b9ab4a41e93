"""Seeds and significance in a sweep: jobs that differ only in `seed` (or in `data.fold`, for k-fold runs) form a
group (mean and std of each metric), and every group is compared with the best one by McNemar's exact test on the
same held-out photos.

McNemar's test looks only at the photos the two models disagree on (one right, the other wrong): if the models
were equally good, each of those would go either way with probability 1/2, so the two-sided binomial test of the
split gives the p-value. Runs are paired by seed and fold (seed s of one group with seed s of the other) and their
photos by path; the discordant photos of all pairs are pooled.
"""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from scipy.stats import binomtest

from catdog.callbacks.predictions import predictions_file

ALPHA = 0.05
# the overrides that repeat a setting rather than change it
REPLICATE_KEYS = ("seed", "data.fold")


def group_jobs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Groups of jobs whose overrides are equal but for seed and fold, in the order of their first job."""
    groups: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        key = tuple(sorted((k, v) for k, v in r["overrides"].items() if k not in REPLICATE_KEYS))
        groups.setdefault(key, {"overrides": dict(key), "jobs": []})["jobs"].append(r)
    return list(groups.values())


def seed_stats(group: dict[str, Any], metrics: list[str]) -> dict[str, Any]:
    """`n_seeds` (jobs with a result: seeds x folds) and `<metric>_mean`, `<metric>_std` (sample std; None for
    one job)."""
    ok = [r for r in group["jobs"] if r["status"] == "ok"]
    stats: dict[str, Any] = {"n_seeds": len(ok)}
    for m in metrics:
        values = [r["metrics"][m] for r in ok if isinstance(r["metrics"].get(m), int | float)]
        values = [v for v in values if not math.isnan(v)]
        stats[f"{m}_mean"] = statistics.fmean(values) if values else None
        stats[f"{m}_std"] = statistics.stdev(values) if len(values) > 1 else None
    return stats


def replicate(config: Any, overrides: dict[str, str]) -> tuple[str, ...]:
    """A job's seed and fold, from its saved config (else its overrides), as strings."""
    values = [OmegaConf.select(config, k) if config is not None else overrides.get(k) for k in REPLICATE_KEYS]
    return tuple(str(v) for v in values)


def read_correct(run_dir: Path, split: str) -> dict[str, bool] | None:
    """path -> whether the run classified that photo correctly; None when the run saved no predictions."""
    path = predictions_file(run_dir, split)
    if not path.exists():
        return None
    with open(path, newline="") as f:
        return {row["path"]: row["correct"] == "1" for row in csv.DictReader(f)}


def scored_split(metric: str | None, groups: list[dict[str, Any]]) -> str:
    """The split the metric is measured on; for other metrics test where every run has test predictions."""
    if metric and metric.split("/")[0] in ("val", "test"):
        return metric.split("/")[0]
    jobs = [r for g in groups for r in g["jobs"] if r["status"] == "ok"]
    return "test" if jobs and all(predictions_file(r["dir"], "test").exists() for r in jobs) else "val"


def seed_pairs(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[dict, dict]]:
    """(run of a, run of b) with the same seed and fold; without a common one, the runs in seed order."""
    ok_a = {r["replicate"]: r for r in a["jobs"] if r["status"] == "ok"}
    ok_b = {r["replicate"]: r for r in b["jobs"] if r["status"] == "ok"}
    common = sorted(set(ok_a) & set(ok_b), key=str)
    if common:
        return [(ok_a[s], ok_b[s]) for s in common]
    return list(zip((ok_a[s] for s in sorted(ok_a, key=str)), (ok_b[s] for s in sorted(ok_b, key=str))))


def mcnemar(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (a right and b wrong, a wrong and b right)."""
    n = only_a + only_b
    return float(binomtest(min(only_a, only_b), n, 0.5).pvalue) if n else 1.0


def compare(best: dict[str, Any], other: dict[str, Any], split: str) -> dict[str, Any] | None:
    """Accuracy difference (best - other, percentage points) on the paired photos and McNemar's p-value."""
    only_best = only_other = photos = pairs = 0
    for run_a, run_b in seed_pairs(best, other):
        a, b = read_correct(run_a["dir"], split), read_correct(run_b["dir"], split)
        if a is None or b is None:
            return None
        shared = a.keys() & b.keys()
        only_best += sum(a[p] and not b[p] for p in shared)
        only_other += sum(b[p] and not a[p] for p in shared)
        photos += len(shared)
        pairs += 1
    if not photos:
        return None
    return {
        "diff_pp": 100.0 * (only_best - only_other) / photos,
        "p": mcnemar(only_best, only_other),
        "photos": photos,
        "pairs": pairs,
    }


def label(group: dict[str, Any], varied: list[str]) -> str:
    return " ".join(f"{k}={group['overrides'][k]}" for k in varied if k in group["overrides"]) or "(defaults)"


def comparison_lines(
    groups: list[dict[str, Any]], best: dict[str, Any], varied: list[str], split: str
) -> list[str]:
    """One line per other group: `best vs other: +0.4 pp, p=0.31 (not significant)`."""
    lines = []
    for g in groups:
        if g is best:
            continue
        result = compare(best, g, split)
        head = f"- `{label(best, varied)}` vs `{label(g, varied)}`: "
        if result is None:
            lines.append(head + f"no paired {split} predictions (predictions_{split}.csv) to compare")
            continue
        verdict = "significant" if result["p"] < ALPHA else "not significant"
        lines.append(
            head + f"{result['diff_pp']:+.1f} pp, p={result['p']:.2g} ({verdict}; "
            f"{result['photos']:,} paired {split} photos over {result['pairs']} pair(s) of runs)"
        )
    return lines


def best_group(groups: list[dict[str, Any]], metric: str | None, maximize: bool) -> dict[str, Any] | None:
    """The group with the best mean of the metric."""
    scored = [g for g in groups if g["stats"].get(f"{metric}_mean") is not None]
    if not scored:
        return None
    return (max if maximize else min)(scored, key=lambda g: g["stats"][f"{metric}_mean"])
