"""One summary table of all jobs of a sweep, with its seed groups and significance tests.

Each job dir holds `.hydra/overrides.yaml` (what it varied) and what catdog.sweeps.job_files names: `metrics.json`,
`pruned.json` or `failed.json`. The SweepSummary Hydra callback reads them after the last job, so it works with every
launcher (basic, joblib, submitit) and sweeper (Optuna).
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, cast

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from catdog.io import replace_atomic, write_csv
from catdog.sweeps.job_files import FAILURE_FILE, METRICS_FILE, PRUNED_FILE
from catdog.sweeps.report import write_report
from catdog.sweeps.significance import (
    ALPHA,
    REPLICATE_KEYS,
    best_group,
    comparison_lines,
    group_jobs,
    label,
    replicate,
    scored_split,
    seed_stats,
)

log = logging.getLogger(__name__)


def read_job(job_dir: Path) -> dict[str, Any]:
    """One row of the summary: job number, overrides, status, metrics or error."""
    hydra_cfg = OmegaConf.load(job_dir / ".hydra" / "hydra.yaml").hydra
    overrides = dict(
        o.split("=", 1) if "=" in o else (o, "")  # type: ignore[misc]  # two items, as the "=" is there
        for o in cast(list[str], OmegaConf.load(job_dir / ".hydra" / "overrides.yaml"))
    )
    config = job_dir / ".hydra" / "config.yaml"
    row: dict[str, Any] = {
        "job": int(hydra_cfg.job.num),
        "dir": job_dir,
        "overrides": overrides,
        "replicate": replicate(OmegaConf.load(config) if config.exists() else None, overrides),
        "metrics": {},
    }
    if (job_dir / PRUNED_FILE).exists():
        pruned = json.loads((job_dir / PRUNED_FILE).read_text())
        metrics = (
            json.loads((job_dir / METRICS_FILE).read_text()) if (job_dir / METRICS_FILE).exists() else {}
        )
        row.update(status="pruned", metrics=metrics, error=f"pruned after epoch {pruned['epochs']}")
    elif (job_dir / METRICS_FILE).exists():
        row.update(status="ok", metrics=json.loads((job_dir / METRICS_FILE).read_text()), error="")
    elif (job_dir / FAILURE_FILE).exists():
        row.update(status="failed", error=json.loads((job_dir / FAILURE_FILE).read_text())["error"])
    else:
        row.update(status="no result", error="the job left neither metrics.json nor failed.json (killed?)")
    return row


def read_sweep(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = [read_job(p.parent.parent) for p in sweep_dir.rglob(".hydra/overrides.yaml")]
    return sorted(rows, key=lambda r: r["job"])


def best_job(rows: list[dict[str, Any]], metric: str | None, maximize: bool) -> dict[str, Any] | None:
    scored = [
        r
        for r in rows
        if r["status"] == "ok"
        and isinstance(r["metrics"].get(metric), int | float)
        and not math.isnan(r["metrics"][metric])
    ]
    if not scored:
        return None
    return (max if maximize else min)(scored, key=lambda r: r["metrics"][metric])


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def metric_names(rows: list[dict[str, Any]], metric: str | None) -> list[str]:
    """Every metric of any job, the optimised one first."""
    return sorted({k for r in rows for k in r["metrics"]}, key=lambda k: (k != metric, k))


def summary_table(
    rows: list[dict[str, Any]], metric: str | None, groups: list[dict[str, Any]]
) -> tuple[list[str], list[list], dict[str, str]]:
    """Columns (job, varied overrides, status, metrics, error, then its seed group's n_seeds and each metric's
    mean and std), rows, and the overrides shared by all jobs."""
    keys = list(dict.fromkeys(k for r in rows for k in r["overrides"]))
    common = {k: rows[0]["overrides"][k] for k in keys if len({r["overrides"].get(k) for r in rows}) == 1}
    varied = [k for k in keys if k not in common] if len(rows) > 1 else keys
    names = metric_names(rows, metric)
    stat_names = ["n_seeds", *(f"{m}_{s}" for m in names for s in ("mean", "std"))]
    group_of = {r["job"]: g for g in groups for r in g["jobs"]}
    header = ["job", *varied, "status", *names, "error", *stat_names]
    table = [
        [
            str(r["job"]),
            *(r["overrides"].get(k, "") for k in varied),
            r["status"],
            *(r["metrics"].get(m, "") for m in names),
            (r["error"].splitlines() or [""])[0][:300],
            *("" if (v := group_of[r["job"]]["stats"][k]) is None else v for k in stat_names),
        ]
        for r in rows
    ]
    return header, table, ({} if len(rows) == 1 else common)


def photo_counts(rows: list[dict[str, Any]]) -> str:
    """What each run's numbers rest on: `2,500 val photos, 2,500 test photos` (from <split>/n_images)."""
    parts = []
    for split in ("val", "test"):
        counts = sorted(
            {r["metrics"][f"{split}/n_images"] for r in rows if f"{split}/n_images" in r["metrics"]}
        )
        if counts:
            shown = f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,} to {counts[-1]:,}"
            parts.append(f"{shown} {split} photos")
    return ", ".join(parts)


def seeds_section(
    groups: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    metric: str | None,
    maximize: bool,
    varied: list[str],
) -> list[str]:
    """Markdown: each group's mean +- std over its seeds (and folds), what each run's numbers rest on, and the best
    group against each other one on the test split where there is one, Holm-corrected."""
    names = metric_names(rows, metric)
    table = [
        [label(g, varied), g["stats"]["n_seeds"], *(mean_std(g["stats"], m) for m in names)] for g in groups
    ]
    ok = [r for r in rows if r["status"] == "ok"]
    counts = photo_counts(ok)
    parts = [
        "## Seed groups (jobs that differ only in seed or data.fold): mean +- std",
        to_markdown(["group", "n_seeds", *names], table)
        + (f"\n\nEach run's metrics rest on {counts} (`<split>/n_images`)." if counts else ""),
    ]
    best = best_group(groups, metric, maximize)
    if best is not None and len(groups) > 1:
        split = scored_split(groups)
        chosen_on = str(metric).split("/")[0]
        caveat = (
            f" The same {split} photos chose the best group, so its lead is optimistic: hold out a test split "
            "(data.test_fraction, test=true) to compare on photos that chose nothing."
            if chosen_on == split
            else ""
        )
        parts.append(
            f"Best group by mean {metric} (chosen on {chosen_on}) against every other group on the {split} split, "
            f"paired on the same photos (McNemar's exact test, p-values Holm-corrected for the number of "
            f"comparisons; Holm p < {ALPHA} is significant).{caveat}\n"
            + "\n".join(comparison_lines(groups, best, varied, split))
        )
    return parts


def mean_std(stats: dict[str, Any], m: str) -> str:
    mean, std = stats[f"{m}_mean"], stats[f"{m}_std"]
    if mean is None:
        return ""
    return f"{mean:.4f}" if std is None else f"{mean:.4f} +- {std:.4f}"


def to_markdown(header: list[str], table: list[list]) -> str:
    def line(cells):
        return "| " + " | ".join(_fmt(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in table)])


def write_summary(sweep_dir: Path, metric: str | None, maximize: bool = True) -> str:
    """Write summary.csv, summary.md and the report page summary.html in the sweep dir; returns the Markdown."""
    rows = read_sweep(sweep_dir)
    groups = group_jobs(rows)
    for g in groups:
        g["stats"] = seed_stats(g, metric_names(rows, metric))
    header, table, common = summary_table(rows, metric, groups)
    replace_atomic(sweep_dir / "summary.csv", lambda f: write_csv(f, header, table), binary=False)
    ok, pruned = (sum(r["status"] == s for r in rows) for s in ("ok", "pruned"))
    parts = [
        f"# Sweep {sweep_dir}",
        f"{len(rows)} jobs, {ok} ok, "
        + (f"{pruned} pruned (stopped early by the pruner; not results), " if pruned else "")
        + f"{len(rows) - ok - pruned} failed or missing.",
    ]
    if common:
        parts.append("Same in every job: " + " ".join(f"`{k}={v}`" for k, v in common.items()))
    headline = parts[1:]
    parts.append(to_markdown(header, table))
    best = best_job(rows, metric, maximize)
    if best is not None:
        shown = " ".join(f"{k}={v}" for k, v in best["overrides"].items() if k not in common)
        n = best["metrics"].get(f"{str(metric).split('/')[0]}/n_images")
        on = f" on {n:,} {str(metric).split('/')[0]} photos" if isinstance(n, int) else ""
        parts.append(
            f"Best {metric}: {_fmt(best['metrics'][metric])}{on}, job {best['job']} ({shown}), {best['dir']}"
        )
        headline.append(parts[-1])
    seeds = []
    if len(rows) > 1:
        varied = [
            k
            for k in dict.fromkeys(k for r in rows for k in r["overrides"])
            if k not in common and k not in REPLICATE_KEYS
        ]
        seeds = seeds_section(groups, rows, metric, maximize, varied)
    markdown = "\n\n".join([*parts, *seeds]) + "\n"
    replace_atomic(sweep_dir / "summary.md", lambda f: f.write(markdown), binary=False)
    counts = photo_counts([r for r in rows if r["status"] == "ok"])
    headline += [f"Each run's metrics rest on {counts}."] if counts else []
    write_report(sweep_dir, rows, groups, metric, headline, seeds[2] if len(seeds) > 2 else "")
    return markdown


def maximizes(config: DictConfig) -> bool:
    """The sweeper's direction (Optuna's `direction`), else: minimise losses, maximise everything else."""
    direction = OmegaConf.select(config, "hydra.sweeper.direction")
    if direction is not None:
        first = direction[0] if OmegaConf.is_list(direction) else direction
        return "max" in str(first).lower()
    return "loss" not in str(config.get("optimized_metric") or "")


class SweepSummary(Callback):
    """Hydra callback: after a multirun, print and save a table of all jobs (failed ones with their error)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        markdown = write_summary(sweep_dir, config.get("optimized_metric"), maximizes(config))
        print(markdown, flush=True)
        log.info("Sweep summary written to %s and %s", sweep_dir / "summary.md", sweep_dir / "summary.csv")
        rows = read_sweep(sweep_dir)
        failed = [str(r["job"]) for r in rows if r["status"] not in ("ok", "pruned")]
        if failed:  # after every job and the summary: scripts and CI see that the sweep did not fully succeed
            print(
                f"error: {len(failed)} of {len(rows)} sweep jobs failed (job {', '.join(failed)}); "
                f"their errors are in {sweep_dir / 'summary.md'}",
                file=sys.stderr,
            )
            sys.exit(1)
