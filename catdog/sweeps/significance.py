"""Seeds and significance in a sweep: jobs that differ only in `seed` (or in `data.fold`, for k-fold runs) form a
group (mean and std of each metric), and every group is compared with the best one by McNemar's exact test on the
same held-out photos.

McNemar's test looks only at the photos the two models disagree on (one right, the other wrong): if the models
were equally good, each of those would go either way with probability 1/2, so the two-sided binomial test of the
split gives the p-value. Runs are paired by seed and fold (seed s of one group with seed s of the other) and their
photos by path; the discordant photos of all pairs are pooled. Two groups with no seed in common pair their runs in
seed order, again on the photos both runs scored.

So as not to overclaim: the best group is chosen on one split (the optimised metric's, usually val, which also chose
each run's checkpoint), so the comparisons use the test split wherever every run has one; and the best group is
compared with every other group, so the p-values are Holm-corrected for that number of comparisons.
"""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from catdog.sweeps.job_files import predictions_file

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


def scored_split(groups: list[dict[str, Any]]) -> str:
    """The split the groups are compared on: test where every run that has a result saved test predictions (the
    photos that chose neither the checkpoints nor the best group), else val."""
    jobs = [r for g in groups for r in g["jobs"] if r["status"] == "ok"]
    return "test" if jobs and all(predictions_file(r["dir"], "test").exists() for r in jobs) else "val"


def seed_pairs(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[tuple[dict, dict]], bool]:
    """(run of a, run of b) with the same seed and fold, and True; without a common one, the runs in seed order,
    and False."""
    ok_a = {r["replicate"]: r for r in a["jobs"] if r["status"] == "ok"}
    ok_b = {r["replicate"]: r for r in b["jobs"] if r["status"] == "ok"}
    common = sorted(set(ok_a) & set(ok_b), key=str)
    if common:
        return [(ok_a[s], ok_b[s]) for s in common], True
    in_order = zip((ok_a[s] for s in sorted(ok_a, key=str)), (ok_b[s] for s in sorted(ok_b, key=str)))
    return list(in_order), False


def mcnemar(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (a right and b wrong, a wrong and b right)."""
    # imported here: every train.py loads this module (the sweep summary is a Hydra callback of every run), and
    # scipy.stats takes ~0.6 s of CPU to import on a 2-core CPU
    from scipy.stats import binomtest

    n = only_a + only_b
    return float(binomtest(min(only_a, only_b), n, 0.5).pvalue) if n else 1.0


def compare(best: dict[str, Any], other: dict[str, Any], split: str) -> dict[str, Any] | None:
    """Accuracy difference (best - other, percentage points) on the paired photos, McNemar's p-value, the number
    of paired photos and pairs of runs, and whether the pairs share their seeds; None without predictions."""
    only_best = only_other = photos = 0
    pairs, same_seeds = seed_pairs(best, other)
    for run_a, run_b in pairs:
        a, b = read_correct(run_a["dir"], split), read_correct(run_b["dir"], split)
        if a is None or b is None:
            return None
        shared = a.keys() & b.keys()
        only_best += sum(a[p] and not b[p] for p in shared)
        only_other += sum(b[p] and not a[p] for p in shared)
        photos += len(shared)
    if not pairs:
        return None
    return {
        "diff_pp": 100.0 * (only_best - only_other) / photos if photos else 0.0,
        "p": mcnemar(only_best, only_other),
        "photos": photos,
        "pairs": len(pairs),
        "same_seeds": same_seeds,
    }


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of m p-values (in their order): the i-th smallest times (m - i + 1), made
    non-decreasing, at most 1. Rejecting where the adjusted p < alpha keeps the chance of any false "significant"
    among all m comparisons below alpha."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def label(group: dict[str, Any], varied: list[str]) -> str:
    return " ".join(f"{k}={group['overrides'][k]}" for k in varied if k in group["overrides"]) or "(defaults)"


def comparison_lines(
    groups: list[dict[str, Any]], best: dict[str, Any], varied: list[str], split: str
) -> list[str]:
    """One line per other group: `best vs other: +0.4 pp, p=0.31, Holm p=0.62 over 2 comparisons (not
    significant; 2,000 paired test photos over 2 pair(s) of runs)`."""
    others = [g for g in groups if g is not best and any(r["status"] == "ok" for r in g["jobs"])]
    results = [compare(best, g, split) for g in others]
    tested = [r for r in results if r is not None and r["photos"]]
    for r, adjusted in zip(tested, holm([r["p"] for r in tested])):
        r["p_holm"] = adjusted
    lines = []
    for g, result in zip(others, results):
        head = f"- `{label(best, varied)}` vs `{label(g, varied)}`: "
        if result is None:
            lines.append(head + f"no paired {split} predictions (predictions_{split}.csv) to compare")
            continue
        if not result["photos"]:
            lines.append(
                head + f"their runs scored no {split} photo in common (different splits?): not compared"
            )
            continue
        verdict = "significant" if result["p_holm"] < ALPHA else "not significant"
        pairing = "" if result["same_seeds"] else ", runs of different seeds paired in seed order"
        lines.append(
            head + f"{result['diff_pp']:+.1f} pp, p={result['p']:.2g}, Holm p={result['p_holm']:.2g} over "
            f"{len(tested)} comparison(s) ({verdict}; {result['photos']:,} paired {split} photos over "
            f"{result['pairs']} pair(s) of runs{pairing})"
        )
    return lines


def best_group(groups: list[dict[str, Any]], metric: str | None, maximize: bool) -> dict[str, Any] | None:
    """The group with the best mean of the metric."""
    scored = [g for g in groups if g["stats"].get(f"{metric}_mean") is not None]
    if not scored:
        return None
    return (max if maximize else min)(scored, key=lambda g: g["stats"][f"{metric}_mean"])
