"""Wall-clock measurements of training, logged like any metric so benchmarks and users read the same numbers."""

from __future__ import annotations

import time

import pytorch_lightning as pl


class EpochTimer(pl.Callback):
    """Logs `perf/train_epoch_s` and `perf/train_samples_per_s` (training batches only, as the tutorial times
    its loop) and `perf/elapsed_s` (wall time since fit started, at each validation: a time-to-accuracy axis)."""

    def __init__(self) -> None:
        self.fit_start = self.epoch_start = self.last_batch_end = 0.0
        self.samples = 0

    def on_fit_start(self, trainer, pl_module) -> None:
        self.fit_start = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epoch_start = self.last_batch_end = time.perf_counter()
        self.samples = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.samples += len(batch[1])
        self.last_batch_end = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            pl_module.log("perf/elapsed_s", time.perf_counter() - self.fit_start)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        seconds = self.last_batch_end - self.epoch_start
        if self.samples and seconds > 0:
            pl_module.log("perf/train_epoch_s", seconds)
            pl_module.log("perf/train_samples_per_s", self.samples / seconds)
