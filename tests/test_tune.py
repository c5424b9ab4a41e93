"""`python train.py tune=lr_find|batch_size`: Lightning's tuners on the configured run, instead of training (run
in this process: what the tuners do is tested, not the command line)."""

import json
import logging
import math

import pytest
from helpers import tiny_overrides, train_in_process, write_class_folders

from catdog.errors import CatdogError
from catdog.run.tune import batch_size_limit, lr_find_warnings


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
    assert result["warnings"][0].startswith("the curve has only 30 losses (tune.num_training=30)")
    assert f"lr_find: {result['warnings'][0]}" in caplog.text
    assert not (run / "checkpoints").exists() and not (run / "metrics.json").exists()
    assert not list(run.glob(".lr_find*.ckpt"))


@pytest.mark.slow
def test_lr_find_with_few_steps_warns_that_its_suggestion_sits_where_the_loss_diverges(tmp_path):
    # the search: 20 steps from 1e-6 to 1 suggested 0.13 (here too), past the curve's lowest loss
    source = write_class_folders(tmp_path / "PetImages", per_class=60)
    train_in_process(*tiny_overrides(source, tmp_path), "tune=lr_find", "tune.num_training=20")
    result = json.loads((tmp_path / "run" / "lr_find.json").read_text())
    few, edge = result["warnings"]
    assert few.startswith("the curve has only 20 losses (tune.num_training=20)") and "num_training=100" in few
    assert edge.startswith(f"the suggestion {result['suggestion']:.3g} sits where the loss stops falling")


def curve(n: int, lowest_at: float, diverge: bool = True) -> tuple[list[float], list[float]]:
    """A range test's losses over n exponentially spaced rates from 1e-6 to 1: falling to their lowest at
    `lowest_at`, then rising steeply (if `diverge`)."""
    lrs = [1e-6 * 1e6 ** (i / (n - 1)) for i in range(n)]
    losses = [0.7 - 0.5 * min(1.0, math.log(lr / 1e-6) / math.log(lowest_at / 1e-6)) for lr in lrs]
    if diverge:
        losses = [
            loss + (20 * math.log(lr / lowest_at) if lr > lowest_at else 0) for loss, lr in zip(losses, lrs)
        ]
    return lrs, losses


def test_lr_find_warnings_name_a_short_or_stopped_search_and_a_suggestion_at_the_edge():
    lrs, losses = curve(100, lowest_at=0.05)
    assert lr_find_warnings(lrs, losses, 0.002, 100, 4.0) == []  # 25x below the lowest loss: a healthy pick
    loss, lr = min(zip(losses, lrs))  # lr 0.046: the grid's rate nearest 0.05
    (edge,) = lr_find_warnings(lrs, losses, 0.03, 100, 4.0)
    assert f"sits where the loss stops falling (lowest {loss:.3g} at lr {lr:.3g}" in edge
    assert f"model.optimizer.lr={lr / 10:.2g}" in edge
    (stopped,) = lr_find_warnings(lrs[:40], losses[:40], 1e-5, 100, 4.0)
    assert (
        "stopped at step 40 of 100, when the loss passed 4x its best" in stopped and "tune.max_lr" in stopped
    )
    assert lr_find_warnings(lrs, losses, None, 100, 4.0) == []  # no suggestion: lr_find says so itself


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
    assert json.loads((run / "batch_size.json").read_text()) == {
        "batch_size": 32,
        "limited_by": "train split",
    }
    assert "a batch of 32 holds the whole training split (30 images)" in caplog.text
    assert "data.batch_size=32" in caplog.text
    assert not (run / "checkpoints").exists() and not (run / "metrics.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cap", "limit", "said"),
    [
        (
            "tune.max_val=16",
            "max_val",
            "the search stopped at its cap tune.max_val=16 without running out of memory",
        ),
        ("tune.max_trials=3", "max_trials", "the search stopped after tune.max_trials=3 doublings"),
    ],
)
def test_a_batch_size_search_stopped_by_its_cap_says_so(image_folder, tmp_path, caplog, cap, limit, said):
    # a CPU does not run out of memory: the tune.max_val=64 was reported as "the largest batch that fits"
    caplog.set_level(logging.INFO)
    train_in_process(*tiny_overrides(image_folder, tmp_path), "tune=batch_size", cap)
    found = json.loads((tmp_path / "run" / "batch_size.json").read_text())
    assert found == {"batch_size": 16 if limit == "max_val" else 8, "limited_by": limit}
    assert said in caplog.text and "the largest batch that fits in memory" not in caplog.text


def test_fast_dev_run_is_one_message(image_folder, tmp_path):
    with pytest.raises(CatdogError, match="tune=lr_find runs no search with trainer.fast_dev_run=true"):
        train_in_process(*tiny_overrides(image_folder, tmp_path), "tune=lr_find", "trainer.fast_dev_run=true")


def test_only_a_search_that_ran_out_of_memory_reports_the_largest_batch_that_fits():
    # a GPU's out-of-memory stop (power mode: 512 failed, 256 is the answer); the other stops are above
    assert batch_size_limit(256, 20000, "power", 2, 25, 8192) == (
        "memory",
        "the largest batch that fits in memory is 256 (a larger one ran out)",
    )
    assert batch_size_limit(64, 20000, "binsearch", 2, 25, 64)[0] == "max_val"
