"""`python train.py tune=lr_find|batch_size`: Lightning's tuners on the configured run, instead of training (run
in this process: what the tuners do is tested, not the command line)."""

import json
import logging

import pytest
from helpers import tiny_overrides, train_in_process

from catdog.errors import CatdogError


def tensorboard_tags(run_dir) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return events.Tags()


@pytest.mark.slow
def test_lr_find_writes_the_curve_and_its_suggestion_and_does_not_train(image_folder, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    train_in_process(
        *tiny_overrides(image_folder, tmp_path),
        "tune=lr_find",
        "tune.num_training=30",
        "tune.min_lr=1e-5",
        "tune.max_lr=0.5",
        "tune.early_stop_threshold=null",
    )
    run = tmp_path / "run"
    result = json.loads((run / "lr_find.json").read_text())
    # 30 steps although trainer.max_epochs=1 and an epoch has only 4 batches
    assert len(result["lrs"]) == len(result["losses"]) == 30
    assert result["lrs"][0] == pytest.approx(1e-5) and result["lrs"][-1] == pytest.approx(0.5)
    assert 1e-5 <= result["suggestion"] <= 0.5 and result["suggestion"] in result["lrs"]
    assert (run / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "tune/lr_find" in tensorboard_tags(run)["images"]
    assert f"model.optimizer.lr={result['suggestion']:.2g}" in caplog.text
    assert not (run / "checkpoints").exists() and not (run / "metrics.json").exists()
    assert not list(run.glob(".lr_find*.ckpt"))


@pytest.mark.slow
def test_batch_size_finder_doubles_up_to_the_split_and_prints_the_override(image_folder, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    train_in_process(
        *tiny_overrides(image_folder, tmp_path),
        "tune=batch_size",
        "data.loader=tensor",
        "model/scheduler=onecycle",
    )
    run = tmp_path / "run"
    # 2, 4, ..., 32: a CPU does not run out of memory, so the search stops at the training split (30 images), which
    # the tensor path's batches report as a DataLoader's dataset does
    assert json.loads((run / "batch_size.json").read_text()) == {"batch_size": 32}
    assert "data.batch_size=32" in caplog.text
    assert not (run / "checkpoints").exists() and not (run / "metrics.json").exists()


def test_fast_dev_run_is_one_message(image_folder, tmp_path):
    with pytest.raises(CatdogError, match="tune=lr_find runs no search with trainer.fast_dev_run=true"):
        train_in_process(*tiny_overrides(image_folder, tmp_path), "tune=lr_find", "trainer.fast_dev_run=true")
