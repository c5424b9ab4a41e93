"""The debug presets do what they promise on the default model: debug=overfit memorises its batches and says so."""

from __future__ import annotations

import logging
import re

import pytest
from helpers import run_train, tiny_overrides, train_in_process, write_random_labels


def overfit_overrides(tmp_path, *extra: str) -> list[str]:
    """debug=overfit on the default model and data settings (50 px grayscale, batches of 100)."""
    source = write_random_labels(tmp_path / "PetImages")  # 360 photos: 3 batches of 100 are training photos
    return [
        "debug=overfit",
        f"data.source={source}",
        f"data.cache_dir={tmp_path}/cache",
        f"hydra.run.dir={tmp_path}/run",
        "data.progress=false",
        "trainer.enable_progress_bar=false",
        *extra,
    ]


@pytest.mark.slow
def test_overfit_reaches_about_zero_loss_on_the_default_model_even_with_random_labels(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    metrics = train_in_process(*overfit_overrides(tmp_path))
    assert metrics["train/loss"] <= 0.05 and metrics["train/acc"] >= 0.98
    (passed,) = re.findall(
        r"overfit check passed: train/loss \S+, train/acc \S+ after (\d+) epochs", caplog.text
    )
    assert int(passed) < 50  # it stopped at the first epoch that passed, not at debug=overfit's max_epochs


def test_overfit_says_when_the_model_did_not_learn(tmp_path, caplog):
    metrics = train_in_process(*overfit_overrides(tmp_path, "trainer.max_epochs=2"))
    assert metrics["train/loss"] > 0.05
    assert "overfit check failed: train/loss" in caplog.text and "after 2 epochs" in caplog.text


def test_debug_runs_print_no_library_debug_lines_and_the_profiler_prints_its_report(image_folder, tmp_path):
    """debug=* sets the root logger to DEBUG: catdog's and Lightning's DEBUG lines, not matplotlib's font search or
    fsspec's "open file"; debug=profiler's report is printed, as its config says."""
    proc = run_train(*tiny_overrides(image_folder, tmp_path), "debug=profiler")
    printed = proc.stdout + proc.stderr
    debug_loggers = set(re.findall(r"\]\[([\w.]+)\]\[DEBUG\]", printed))
    ours = ("catdog", "pytorch_lightning", "lightning", "torch", "hydra", "train")
    assert {name for name in debug_loggers if not name.startswith(ours)} == set()
    assert "FIT Profiler Report" in printed
