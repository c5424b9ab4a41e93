"""The learning-rate schedule of `model.scheduler`, planned for the run's length, and planned again when a resumed run
is given another length (`ckpt_path=last trainer.max_epochs=<more>`).

A schedule whose shape depends on the run's length (one-cycle's `total_steps`, cosine's `T_max`) is restored from
the checkpoint with its old length: one-cycle then fails one step past its end, cosine climbs back up. When the
restored length differs from this run's, the schedule is rebuilt for the new length and set to the step the run has
reached: from there on the learning rate is the one a run planned for the new length from the start has at that
step, and it ends annealed at the new end. The rate jumps at the resume (one-cycle at pct_start 0.25, 2 -> 4
epochs: from ~0 at the old end to ~0.75 of the peak; a long extension lands in the new warm-up instead), the price of
ending on the schedule the longer run would have had. `step` and no schedule do not depend on the length and go on.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)
# the attributes that hold a schedule's planned length: OneCycleLR's steps, CosineAnnealingLR's epochs
LENGTH_KEYS = ("total_steps", "T_max")


def takes_total_steps(factory: Callable) -> bool:
    """The schedule is told the run's optimizer steps (OneCycleLR), unless model.scheduler fixes them."""
    fixed = getattr(factory, "keywords", {})
    return "total_steps" in inspect.signature(factory).parameters and "total_steps" not in fixed


def build_scheduler(
    factory: Callable, optimizer: torch.optim.Optimizer, total_steps: int, last_epoch: int = -1
) -> dict:
    """Lightning's scheduler config of `factory` on `optimizer` for a run of `total_steps` optimizer steps, started
    at `last_epoch + 1` (-1: from the start; the optimizer's groups then already hold the schedule's keys)."""
    extra = {"total_steps": total_steps} if takes_total_steps(factory) else {}
    start = {"last_epoch": last_epoch} if last_epoch >= 0 else {}
    try:
        scheduler = factory(optimizer, **extra, **start)
    except ZeroDivisionError:
        # OneCycleLR divides by pct_start * total_steps - 1 (zero for 4 steps at pct_start 0.25): one step
        # more keeps the shape, and its last, lowest learning rate is never reached
        extra["total_steps"] += 1
        scheduler = factory(optimizer, **extra, **start)
    return {"scheduler": scheduler, "interval": "step" if extra else "epoch"}


def replan_schedules(trainer: pl.Trainer, factory: Callable | None) -> None:
    """After a checkpoint is restored: a schedule planned for another length than this run's is built again for this
    run's length, at the step it had reached (see the module's docstring); no change on a fresh or same-length run."""
    if factory is None:
        return
    total = int(trainer.estimated_stepping_batches)
    for config in trainer.lr_scheduler_configs:
        old = config.scheduler
        if not any(hasattr(old, k) for k in LENGTH_KEYS):  # step, or a tuner's own schedule: nothing to plan
            continue
        groups = [dict(g) for g in old.optimizer.param_groups]  # the rates the restored schedule set
        new = build_scheduler(factory, old.optimizer, total, old.last_epoch - 1)["scheduler"]
        before = {k: getattr(old, k) for k in LENGTH_KEYS if hasattr(old, k)}
        after = {k: getattr(new, k) for k in before}
        if before == after:  # the restored schedule goes on, with its own rates to the last bit
            for group, saved in zip(old.optimizer.param_groups, groups, strict=True):
                group.update(saved)
            continue
        config.scheduler = new
        lengths = ", ".join(f"{k} {before[k]} -> {after[k]}" for k in before)
        log.info(
            "%s re-planned for this run's length (%s) from the step it reached (%d): it now ends annealed at "
            "trainer.max_epochs=%s.",
            type(old).__name__,
            lengths,
            old.last_epoch,
            trainer.max_epochs,
        )
