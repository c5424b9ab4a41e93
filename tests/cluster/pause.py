"""A callback for the cluster test: a pause after each training epoch, so a pre-emption lands mid-run on any CPU."""

import time

import pytorch_lightning as pl


class PauseEachEpoch(pl.Callback):
    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        time.sleep(self.seconds)
