"""debug=overfit's verdict: a model that can learn memorises the few batches it sees again and again."""

from __future__ import annotations

import logging

import pytorch_lightning as pl

log = logging.getLogger(__name__)


class OverfitCheck(pl.Callback):
    """Stops training at the first epoch whose `train/loss` is at most `max_loss`, and at the end logs whether the
    last epoch got there: passed (the model, its labels and its loss can fit data) or failed (one of them is broken,
    or the net needs more epochs)."""

    def __init__(self, max_loss: float = 0.05):
        self.max_loss = max_loss

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss = trainer.callback_metrics.get("train/loss")
        # the verdict is known: the default model passes at epoch ~36 of debug=overfit's 50 on random labels
        if loss is not None and loss <= self.max_loss:
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss, acc = (trainer.callback_metrics.get(k) for k in ("train/loss", "train/acc"))
        if loss is None or not trainer.is_global_zero:
            return
        seen = (
            f"train/loss {float(loss):.4f}, train/acc {float(acc):.3f} after {trainer.current_epoch} epochs"  # type: ignore[arg-type]  # logged with loss
        )
        if loss <= self.max_loss:
            log.info("overfit check passed: %s (<= %g): the model can learn its labels.", seen, self.max_loss)
        else:
            log.warning(
                "overfit check failed: %s, above %g. A healthy model memorises the same few batches (the default "
                "one even with random labels); look for a bug in the model, the labels or the loss, or give a "
                "larger net more epochs (trainer.max_epochs).",
                seen,
                self.max_loss,
            )
