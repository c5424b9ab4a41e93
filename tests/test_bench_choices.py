"""The benchmarks that choose on val: longer runs (an extended run against a planned one) and architectures (resnet
against fast's ConvNet), each run for real on tiny generated photos."""

from __future__ import annotations

import subprocess

import pytest
from helpers import write_class_folders
from warm_python import warm_run

from benchmarks import architectures, longer_runs, record

TINY = ["data.resolution=32", "data.batch_size=8", "data.progress=false", "trainer.accelerator=cpu"]


@pytest.fixture(autouse=True)
def warm_commands(monkeypatch):
    """train.py forked from the tests' warm interpreter (warm_python.py): what the benchmark runs, not how fast."""
    monkeypatch.setattr(subprocess, "run", warm_run(subprocess.run))


def test_longer_runs_extends_the_short_run_and_trains_a_planned_one(tmp_path):
    small = [o for o in longer_runs.COMMON if not o.startswith("data.resolution")] + TINY
    source = write_class_folders(tmp_path / "photos", per_class=12)
    scores = longer_runs.seed_runs(
        source, 30, tmp_path / "work", small + ["model.channels=[4,8,8,8]"], epochs=2
    )
    assert set(scores) == {"short", "restarted", "extended", "planned"}
    assert all(0 <= v <= 1 for v in scores.values())
    extended = tmp_path / "work" / "extended"
    assert (extended / ".hydra" / "resume_1").is_dir()  # the second command resumed the first run's folder
    assert "max_epochs: 2" in (extended / ".hydra" / "resume_1" / "config.yaml").read_text()
    restarted = (tmp_path / "work" / "restarted" / "provenance.json").read_text()
    # the warm restart started from the short run's weights
    assert "extended/checkpoints/last.ckpt" in restarted


def test_architectures_trains_each_candidate_and_records_its_means(tmp_path, monkeypatch):
    monkeypatch.setattr(record, "MEASURED", [])
    source = write_class_folders(tmp_path / "photos", per_class=12)
    rows = [
        architectures.candidate_run(
            name, [*overrides, *TINY, "trainer.max_epochs=1"], 30, source, tmp_path / "w"
        )
        for name, overrides in architectures.CANDIDATES.items()
    ]
    assert [r["name"] for r in rows] == list(architectures.CANDIDATES)
    flops = {r["name"]: r["flops"] for r in rows}
    assert all(f > 0 for f in flops.values()) and len(set(flops.values())) == 2  # two different networks
    text = "\n".join(architectures.architecture_lines(rows, peak=1e12))
    assert "| resnet (fast's widths) | 30 |" in text and "| convnet (experiment=fast) | 30 |" in text
    metrics = [m["metric"] for m in record.MEASURED]
    assert "resnet (fast's widths): share of the bf16 matmul peak (%)" in metrics
    assert "convnet (experiment=fast): best val acc (%)" in metrics


def test_the_architecture_verdict_needs_better_val_at_no_more_time():
    def rows(val: float, speed: float) -> list[dict]:
        return [
            {"name": "convnet", "val": 0.90, "images_s": 300},
            {"name": "resnet", "val": val, "images_s": speed},
        ]

    assert architectures.verdict(rows(0.92, 310)).startswith("resnet beats convnet")
    assert architectures.verdict(rows(0.92, 250)).startswith("No candidate")  # better, but slower
    assert architectures.verdict(rows(0.89, 400)).startswith("No candidate")  # faster, but worse


def test_the_peak_is_that_of_the_precision_the_runs_train_in():
    from catdog.run.hardware import native_bf16

    name, peak = architectures.training_peak()
    assert name == ("bf16" if native_bf16(gpu=False) else "float32 (no native bf16 here)") and peak > 1e9
