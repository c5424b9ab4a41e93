"""Training longer: `ckpt_path=last trainer.max_epochs=<more>` goes on with every schedule, and a schedule planned
for the run's length (one-cycle, cosine) ends as a run planned for the new length from the start ends."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import epochs_done, tiny_overrides, train_in_process

SCHEDULES = {
    "onecycle": ["model/scheduler=onecycle"],
    "cosine": ["model/scheduler=cosine"],
    "step": ["model/scheduler=step", "model.scheduler.step_size=1"],
    "none": [],
}


def last(out: Path) -> dict:
    return torch.load(out / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def schedule_state(checkpoint: dict) -> dict:
    """The scheduler's position, length and last rates (empty without a scheduler)."""
    states = checkpoint["lr_schedulers"]
    if not states:
        return {}
    keep = ("last_epoch", "total_steps", "T_max", "_last_lr", "step_size")
    return {k: v for k, v in states[0].items() if k in keep}


def extend(image_folder: Path, tmp_path: Path, *extra: str) -> tuple[dict, dict]:
    """A 2-epoch run extended to 4 with ckpt_path=last, and a 4-epoch run from the start: their last checkpoints."""
    common = [*extra, f"data.cache_dir={tmp_path}/cache"]
    train_in_process(*tiny_overrides(image_folder, tmp_path / "longer"), *common, "trainer.max_epochs=2")
    train_in_process(
        *tiny_overrides(image_folder, tmp_path / "longer"), *common, "trainer.max_epochs=4", "ckpt_path=last"
    )
    train_in_process(*tiny_overrides(image_folder, tmp_path / "planned"), *common, "trainer.max_epochs=4")
    return last(tmp_path / "longer"), last(tmp_path / "planned")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_a_run_extended_from_2_to_4_epochs_ends_on_the_schedule_of_a_4_epoch_run(
    name, image_folder, tmp_path
):
    longer, planned = extend(image_folder, tmp_path, *SCHEDULES[name])
    assert epochs_done(longer) == epochs_done(planned) == 4
    assert longer["global_step"] == planned["global_step"] == 16
    state = schedule_state(longer)
    assert state == schedule_state(planned)  # same length, same position, the same last rates
    if name == "onecycle":  # ends annealed at the new end, not one step past the old one
        assert state["total_steps"] == 16 and state["last_epoch"] == 16
        assert state["_last_lr"][0] < 0.05 * 1e-3  # of the peak, model.optimizer.lr
    if name == "cosine":  # annealed to 0 at epoch 4, not climbing back up after epoch 2
        assert state["T_max"] == 4 and state["_last_lr"][0] < 1e-9
    if name == "step":
        assert state["_last_lr"][0] == pytest.approx(1e-3 * 0.3**4)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["fast", "best"])
def test_the_presets_train_longer(preset, image_folder, tmp_path):
    tiny = [
        o
        for o in tiny_overrides(image_folder, tmp_path)
        if not o.startswith(("model.hidden", "model.kernel"))
    ]
    # best grows its images until epoch 16 of 32 and averages the weights (EMA): here from 8 px, until epoch 1
    small = ["model.progressive_resize={start:8,until_epoch:1}"] if preset == "best" else []
    common = [f"experiment={preset}", *tiny, "model.channels=[4,8]", "model.channels_last=false", *small]
    common += ["threads=null", "trainer.precision=32-true", "test=false"]
    train_in_process(*common, "trainer.max_epochs=2")
    metrics = train_in_process(*common, "trainer.max_epochs=4", "ckpt_path=last")
    checkpoint = last(tmp_path)
    assert epochs_done(checkpoint) == 4 and "val/acc" in metrics
    assert checkpoint["lr_schedulers"][0]["total_steps"] == 16
