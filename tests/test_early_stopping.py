"""Early stopping: it stops a run that stopped improving, and a run interrupted between an epoch's validation and
that epoch's end (Ctrl-C there) resumes from checkpoints/last.ckpt and finishes."""

import pytorch_lightning as pl
import torch
from helpers import tiny_overrides, train_in_process, write_class_folders


class InterruptAfterValidation(pl.Callback):
    """Ctrl-C (KeyboardInterrupt) once, in the hooks that end the first real validation."""

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking and trainer.current_epoch == 0:
            raise KeyboardInterrupt


def test_a_run_interrupted_after_validation_resumes_and_finishes(tmp_path):
    source = write_class_folders(tmp_path / "pets", per_class=16)
    run = [*tiny_overrides(source, tmp_path), "trainer.max_epochs=3"]
    interrupt = f"+callbacks.interrupt._target_={__name__}.InterruptAfterValidation"
    try:
        train_in_process(*run, interrupt)
    except (KeyboardInterrupt, SystemExit):
        pass
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["epoch"] == 0
    metrics = train_in_process(*run, "ckpt_path=last")
    finished = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert finished["epoch"] == 2 and "val/acc" in metrics


def test_early_stopping_ends_a_run_that_stopped_improving(tmp_path):
    source = write_class_folders(tmp_path / "pets", per_class=16)
    # an improvement must exceed 1.0 accuracy: only the first validation counts as one
    train_in_process(
        *tiny_overrides(source, tmp_path),
        "trainer.max_epochs=5",
        "callbacks.early_stopping.patience=1",
        "callbacks.early_stopping.min_delta=1.0",
    )
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 1
