"""The sweep report page: `summary.html` beside summary.md, one self-contained file (plotly's JavaScript inlined, no
network needed to open it): the parameters against the metric (parallel coordinates), every job's learning curve,
the seed groups' means and spread, the best group's comparisons, and the jobs that were pruned or failed."""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any, cast

from catdog.io import replace_atomic
from catdog.sweeps.significance import REPLICATE_KEYS

STATUS_COLOURS = {"ok": "#1f77b4", "pruned": "#ff7f0e", "failed": "#d62728", "no result": "#7f7f7f"}
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.4em; word-break: break-all; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; } td, th { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f3f3f3; } .note { color: #555; font-size: 0.9em; } pre { white-space: pre-wrap; }
"""


def curve(job_dir: Path, metric: str) -> list[float]:
    """The metric after each validation of a job, from its TensorBoard events (else its CSV log); [] without."""
    events = job_dir / "tensorboard"
    if any(events.glob("events.out.tfevents.*")):
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        if metric in accumulator.Tags()["scalars"]:
            return [e.value for e in accumulator.Scalars(metric)]
    log = job_dir / "csv" / "metrics.csv"
    if log.exists():
        import csv

        with open(log, newline="") as f:
            return [float(r[metric]) for r in csv.DictReader(f) if r.get(metric)]
    return []


def number(value: str) -> float | None:
    try:
        result = float(value)
    except ValueError:
        return None
    return result if math.isfinite(result) else None


def dimension(key: str, values: list[str]) -> dict[str, Any]:
    """A parallel-coordinates axis: numbers as they are (log scale over 30x or more), others as ticks."""
    numbers = [number(v) for v in values]
    if all(n is not None for n in numbers):
        floats = cast(list[float], numbers)
        if min(floats) > 0 and max(floats) / min(floats) >= 30:  # a log-scale search: lr, weight decay
            low, high = math.log10(min(floats)), math.log10(max(floats))
            ticks = [low + (high - low) * i / 4 for i in range(5)]
            return {
                "label": f"{key} (log)",
                "values": [math.log10(n) for n in floats],
                "tickvals": ticks,
                "ticktext": [f"{10**t:.2g}" for t in ticks],
            }
        return {"label": key, "values": numbers}
    levels = sorted(set(values))
    return {
        "label": key,
        "values": [levels.index(v) for v in values],
        "tickvals": list(range(len(levels))),
        "ticktext": levels,
    }


def parallel_coordinates(rows: list[dict[str, Any]], varied: list[str], metric: str):
    import plotly.graph_objects as go

    shown = [r for r in rows if isinstance(r["metrics"].get(metric), int | float)]
    if not shown or not varied:
        return None
    dims = [dimension(k, [str(r["overrides"].get(k, "")) for r in shown]) for k in varied]
    dims.append(dimension("status", [r["status"] for r in shown]))
    values = [r["metrics"][metric] for r in shown]
    dims.append({"label": metric, "values": values})
    line = {"color": values, "colorscale": "Viridis", "showscale": True, "colorbar": {"title": metric}}
    fig = go.Figure(go.Parcoords(line=line, dimensions=dims))
    fig.update_layout(title=f"Parameters against {metric} (drag along an axis to select)", height=480)
    return fig


def learning_curves(rows: list[dict[str, Any]], metric: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    for r in rows:
        values = curve(Path(r["dir"]), metric)
        if not values:
            continue
        dash = {"ok": "solid", "pruned": "dash"}.get(r["status"], "dot")
        name = f"job {r['job']} ({r['status']})"
        colour = STATUS_COLOURS.get(r["status"]) if r["status"] != "ok" else None
        fig.add_trace(
            go.Scatter(
                x=list(range(1, len(values) + 1)),
                y=values,
                mode="lines+markers",
                name=name,
                line={"dash": dash, "color": colour},
            )
        )
    if not fig.data:
        return None
    fig.update_layout(
        title=f"{metric} after each epoch, every job (pruned: dashed, failed: dotted)",
        xaxis_title="epoch",
        yaxis_title=metric,
        height=460,
    )
    return fig


def short(value: Any) -> str:
    """A sampled float to 4 significant digits (Optuna's 0.0023276939100527693 is 0.002328)."""
    n = number(str(value))
    return f"{n:.4g}" if n is not None and "." in str(value) else str(value)


def short_label(group: dict[str, Any], varied: list[str]) -> str:
    return (
        " ".join(f"{k}={short(group['overrides'][k])}" for k in varied if k in group["overrides"])
        or "(defaults)"
    )


def with_code(text: str) -> str:
    """Escaped text, its Markdown `code` spans as <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def seed_groups(groups: list[dict[str, Any]], metric: str, varied: list[str]):
    import plotly.graph_objects as go

    scored = [g for g in groups if g["stats"].get(f"{metric}_mean") is not None]
    if not scored:
        return None
    names = [short_label(g, varied) for g in scored]
    fig = go.Figure(
        go.Scatter(
            x=[g["stats"][f"{metric}_mean"] for g in scored],
            y=names,
            mode="markers",
            marker={"size": 12, "symbol": "diamond"},
            error_x={"type": "data", "array": [g["stats"][f"{metric}_std"] or 0 for g in scored]},
            name="mean +- std",
        )
    )
    runs = [(name, r) for name, g in zip(names, scored) for r in g["jobs"] if r["status"] == "ok"]
    fig.add_trace(
        go.Scatter(
            x=[r["metrics"].get(metric) for _, r in runs],
            y=[name for name, _ in runs],
            mode="markers",
            marker={"size": 7, "opacity": 0.6},
            text=[f"job {r['job']}, seed {r['replicate'][0]}" for _, r in runs],
            name="each run (seed, fold)",
        )
    )
    fig.update_layout(
        title=f"Seed groups: mean +- std of {metric} over each group's runs",
        xaxis_title=metric,
        height=max(300, 60 + 40 * len(scored)),
        yaxis={"automargin": True},
    )
    return fig


def job_table(rows: list[dict[str, Any]], varied: list[str]) -> str:
    """HTML: the jobs that were pruned or failed, with what they varied and why they stopped."""
    bad = [r for r in rows if r["status"] != "ok"]
    if not bad:
        return '<p class="note">No job was pruned or failed.</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["job", "status", *varied, "why"])
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(c))}</td>"
            for c in [r["job"], r["status"], *(short(r["overrides"].get(k, "")) for k in varied)]
        )
        + f"<td>{html.escape((r['error'].splitlines() or [''])[0][:300])}</td></tr>"
        for r in bad
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(
    sweep_dir: Path,
    rows: list[dict[str, Any]],
    groups: list[dict[str, Any]],
    metric: str | None,
    headline: list[str],
    comparisons: str,
) -> Path:
    """Write summary.html in the sweep dir: `headline` (lines of text) on top, then the figures and tables."""
    import plotly.io
    import plotly.offline

    keys = list(dict.fromkeys(k for r in rows for k in r["overrides"]))
    varied = [k for k in keys if len({r["overrides"].get(k) for r in rows}) > 1 and k not in REPLICATE_KEYS]
    metric = metric or "val/acc"
    figures = [
        parallel_coordinates(rows, varied, metric),
        learning_curves(rows, metric),
        seed_groups(groups, metric, varied),
    ]
    plots = [
        plotly.io.to_html(f, full_html=False, include_plotlyjs=False, config={"displaylogo": False})
        for f in figures
        if f is not None
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Sweep {html.escape(sweep_dir.name)}</title><style>{CSS}</style>",
        # inlined, not a CDN link: the page opens offline, from a cluster's disk or an archive
        f"<script>{plotly.offline.get_plotlyjs()}</script></head><body>",
        f"<h1>Sweep {html.escape(str(sweep_dir))}</h1>",
        *(f"<p>{with_code(line)}</p>" for line in headline),
        *plots,
        "<h2>Comparisons</h2>",
        f"<pre>{html.escape(comparisons)}</pre>"
        if comparisons
        else '<p class="note">One group: nothing to compare.</p>',
        "<h2>Pruned and failed jobs</h2>",
        job_table(rows, varied),
        '<p class="note">Every job with its metrics: summary.md and summary.csv beside this page.</p>',
        "</body></html>",
    ]
    path = sweep_dir / "summary.html"
    replace_atomic(path, lambda f: f.write("\n".join(parts)), binary=False)
    return path
