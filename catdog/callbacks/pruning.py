"""A sweep job's side of Optuna pruning: report the optimised metric to the job's trial after every validation, and
stop training when the sweep's pruner judges the trial hopeless (catdog/sweeps/study.py says how the job finds it)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl

from catdog.errors import CatdogError

log = logging.getLogger(__name__)


class ReportToTrial(pl.Callback):
    """After each validation rank zero reports `metric` at step = epochs trained and asks the pruner (but after the
    last epoch); every rank gets the answer, and a pruned trial ends like an early stop (checkpoints, curves and
    metrics.json are written as usual), with `pruned_at` set to the epoch count."""

    def __init__(self, metric: str, open_trial: Callable[[], Any]) -> None:
        self.metric = metric
        self.open_trial = open_trial
        self.trial = None  # stays None on ranks > 0: only rank zero talks to the study
        self.pruned_at: int | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.is_global_zero and self.trial is None:
            self.trial = self.open_trial()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epochs = trainer.current_epoch + 1
        prune = False
        if self.trial is not None:
            value = trainer.callback_metrics.get(self.metric)
            if value is None:
                raise CatdogError(
                    f"optimized_metric={self.metric} is not logged at validation, so the pruner has nothing to "
                    f"judge: optimise a validation metric (val/acc, val/loss) or set hydra.sweeper.pruner=none."
                )
            self.trial.report(float(value), epochs)
            # a trial that has trained every epoch is a result, never pruned (a rung at the last epoch would save
            # nothing and throw the trial away)
            prune = epochs != trainer.max_epochs and self.trial.should_prune()
        if trainer.world_size > 1:
            prune = trainer.strategy.broadcast(prune, src=0)
        if prune:
            trainer.should_stop = True
            self.pruned_at = epochs
            log.info("Trial pruned by the sweep's pruner after epoch %d: training stops", epochs)


def trial_callbacks(cfg) -> list[ReportToTrial]:
    """The reporting callback of a job of catdog's Optuna sweeper (none outside one, or without a metric)."""
    import os

    from catdog.sweeps.study import TRIAL_ENV, job_trial, sweep_pruner

    metric = cfg.get("optimized_metric")
    if TRIAL_ENV not in os.environ or not metric:
        return []
    pruner = sweep_pruner(cfg)
    return [ReportToTrial(metric, lambda: job_trial(pruner, cfg.paths.output_dir))]


def pruned_epoch(callbacks: list) -> int | None:
    """The epoch count after which the job's trial was pruned, or None."""
    return next((c.pruned_at for c in callbacks if isinstance(c, ReportToTrial) and c.pruned_at), None)
