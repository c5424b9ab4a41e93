"""The schedule of the picture callbacks: every N epochs (after validation) and once when training ends."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from catdog.visualize import tensorboard_writer


class PeriodicImages(pl.Callback):
    """Calls `draw` every `every_n_epochs` validation epochs (0 = never) and at the end of training."""

    def __init__(self, every_n_epochs: int = 1):
        self.every_n_epochs = every_n_epochs
        self._last_step: int | None = None

    def draw(self, writer, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        raise NotImplementedError

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        if writer is None or not trainer.is_global_zero or trainer.global_step == self._last_step:
            return
        self._last_step = trainer.global_step
        training = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad():
                self.draw(writer, trainer, pl_module, trainer.global_step)
        finally:
            pl_module.train(training)
        writer.flush()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self.every_n_epochs:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._log(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log(trainer, pl_module)


def first_val_loader(trainer: pl.Trainer):
    """The (first) validation DataLoader of the run, or None when it has none."""
    loaders = trainer.val_dataloaders
    if isinstance(loaders, list | tuple):
        loaders = loaders[0] if loaders else None
    return loaders
