"""Time to accuracy of the presets: validation accuracy against wall-clock time since launch."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.record import ROOT, SHARED, benchmark
from benchmarks.training import run_training

TIME_TO_ACCURACY_GOALS = {"fast": (0.92, 15 * 60), "best": (0.965, None)}  # (val/acc, within seconds)


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
