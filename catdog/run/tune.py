"""`python train.py tune=lr_find` / `tune=batch_size`: Lightning's tuners on the configured run.

The result goes to the run dir (`lr_find.json` + `lr_find.png`, or `batch_size.json`) and TensorBoard, and the
override to train with is printed; nothing is trained afterwards (the tuners restore the initial weights).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import hydra
import pytorch_lightning as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from omegaconf import DictConfig
from pytorch_lightning.tuner import Tuner

from catdog.errors import CatdogError
from catdog.io import save_figure, write_json_atomic
from catdog.visualize import tensorboard_writer

log = logging.getLogger(__name__)
# Lightning records an exponential average of the loss (beta 0.98: ~50 steps of memory) whose start is biased low (its
# first value is half the loss, catching up over tens of steps); a shorter search shows mostly that average's delay,
# and its steepest fall comes late, near where the loss diverges: 20 steps suggested lr 0.13 where 100 gave 0.002
MIN_STEPS = 50
SKIP_BEGIN = 10  # Lightning's suggestion skips the first 10 losses too: the biased start
# a suggestion less than 4x (two doublings) below the lowest loss of the curve sits where the loss stops falling;
# the usual pick is ~10x below it
EDGE_RATIO = 4.0


def run_tune(
    cfg: DictConfig, model: pl.LightningModule, datamodule: pl.LightningDataModule, loggers: list
) -> dict:
    """Run the tuner `cfg.tune` names on a trainer without callbacks or checkpoints; its result as metrics."""
    tuner = hydra.utils.instantiate(cfg.tune)
    # every epoch has at least one batch: as many epochs as search steps, so trainer.max_epochs cannot cut it short
    steps = cfg.tune.get("num_training") or cfg.tune.get("steps_per_trial") or 1
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        logger=loggers or False,
        callbacks=[],
        enable_checkpointing=False,
        max_epochs=max(cfg.trainer.get("max_epochs") or 1, steps),
    )
    result = tuner(trainer, model, datamodule, Path(cfg.paths.output_dir))
    # no fit ends this trainer, so nothing else flushes its loggers: CI once read the TensorBoard event file after
    # the command returned and found no lr_find figure in it yet
    for logger in trainer.loggers:
        logger.finalize("success")
    return result


def search(trainer: pl.Trainer, name: str, method: str, model, datamodule, **settings):
    """What Lightning's Tuner `method` finds for the model on the data (`tune=name`)."""
    if trainer.fast_dev_run:  # type: ignore[attr-defined]  # set in Trainer.__init__ by a connector
        raise CatdogError(f"tune={name} runs no search with trainer.fast_dev_run=true: drop that override.")
    return getattr(Tuner(trainer), method)(model, datamodule=datamodule, **settings)


def publish(
    trainer: pl.Trainer,
    output_dir: Path,
    name: str,
    record: dict,
    figure: Figure | None = None,
    scalars: dict[str, float] | None = None,
) -> bool:
    """On rank zero: `<name>.json` (and `<name>.png` of `figure`) in the run dir, the figure as `tune/<name>` and
    the scalars in TensorBoard; False on the other ranks, which write nothing."""
    if not trainer.is_global_zero:
        return False
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output_dir / f"{name}.json", record)
    if figure is not None:
        save_figure(output_dir / f"{name}.png", figure, dpi=100)
    writer = tensorboard_writer(trainer)
    if writer is not None:
        if figure is not None:
            writer.add_figure(f"tune/{name}", figure)
        for tag, value in (scalars or {}).items():
            writer.add_scalar(tag, value)
    return True


def lr_find(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    output_dir: Path,
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    num_training: int = 100,
    mode: str = "exponential",
    early_stop_threshold: float | None = 4.0,
) -> dict[str, float | None]:
    """Lightning's learning-rate range test: the loss over `num_training` steps of growing learning rate, and the
    rate where it falls fastest (Lightning's suggestion)."""
    if not 0 < min_lr < max_lr:
        raise CatdogError(f"tune.min_lr={min_lr}, tune.max_lr={max_lr}: need 0 < min_lr < max_lr.")
    finder = search(
        trainer,
        "lr_find",
        "lr_find",
        model,
        datamodule,
        min_lr=min_lr,
        max_lr=max_lr,
        num_training=num_training,
        mode=mode,
        early_stop_threshold=early_stop_threshold,
        update_attr=False,
    )
    suggestion = finder.suggestion()
    lrs, losses = finder.results["lr"], finder.results["loss"]
    warnings = lr_find_warnings(lrs, losses, suggestion, num_training, early_stop_threshold)
    result = {"suggestion": suggestion, "lrs": lrs, "losses": losses, "warnings": warnings}
    figure = Figure(figsize=(6, 4))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    finder.plot(suggest=True, ax=ax)
    ax.set_title(f"lr_find: suggestion {suggestion:.3g}" if suggestion else "lr_find: no suggestion")
    figure.tight_layout()
    if not publish(trainer, output_dir, "lr_find", result, figure):
        return {"tune/lr_suggestion": suggestion}
    if suggestion is None:
        log.warning(
            "lr_find: too few steps for a suggestion (%d losses); see %s. Raise tune.num_training, use more data "
            "or a smaller data.batch_size.",
            len(result["losses"]),
            output_dir / "lr_find.png",
        )
    else:
        log.info(
            "lr_find: suggested learning rate %.3g (curve in %s). Train with: model.optimizer.lr=%.2g",
            suggestion,
            output_dir / "lr_find.png",
            suggestion,
        )
    for warning in warnings:
        log.warning("lr_find: %s", warning)
    return {"tune/lr_suggestion": suggestion}


def lr_find_warnings(
    lrs: list[float],
    losses: list[float],
    suggestion: float | None,
    num_training: int,
    early_stop_threshold: float | None,
) -> list[str]:
    """Why a suggestion should not be trusted: a curve of fewer than MIN_STEPS losses (asked for, or the search
    stopped when the loss diverged), or a suggestion at the edge where the loss stops falling (see EDGE_RATIO)."""
    warnings = []
    if len(losses) < MIN_STEPS:
        stopped = len(losses) < num_training and early_stop_threshold is not None
        why, fix = (
            (
                f"the search stopped at step {len(losses)} of {num_training}, when the loss passed "
                f"{early_stop_threshold:g}x its best",
                "a lower tune.max_lr, or more tune.num_training steps before the loss diverges",
            )
            if stopped
            else (f"tune.num_training={num_training}", f"tune.num_training={2 * MIN_STEPS} or more")
        )
        warnings.append(
            f"the curve has only {len(losses)} losses ({why}); Lightning averages the loss over ~50 steps, so a "
            f"shorter curve suggests too high a rate. Search again with {fix}."
        )
    later = [(loss, lr) for loss, lr in zip(losses[SKIP_BEGIN:], lrs[SKIP_BEGIN:]) if math.isfinite(loss)]
    if suggestion is not None and later:
        lowest_loss, lowest_lr = min(later)
        if lowest_lr < EDGE_RATIO * suggestion:
            warnings.append(
                f"the suggestion {suggestion:.3g} sits where the loss stops falling (lowest {lowest_loss:.3g} at "
                f"lr {lowest_lr:.3g}; it rises beyond), so training at it may diverge: take about a tenth of the "
                f"lowest loss's rate (model.optimizer.lr={lowest_lr / 10:.2g}), or search again with more steps."
            )
    return warnings


def batch_size(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    output_dir: Path,
    mode: str = "power",
    steps_per_trial: int = 3,
    init_val: int = 2,
    max_trials: int = 25,
    max_val: int = 8192,
) -> dict[str, int | None]:
    """Lightning's batch-size finder: the largest data.batch_size whose training steps fit the accelerator's
    memory (doubling until out of memory; on a CPU that is rarely reached, so `max_val` caps the search)."""
    # the trials measure memory, not learning; their steps add up, and would overrun a one-cycle schedule's total
    model.scheduler_factory = None  # type: ignore[assignment]  # an ImageClassifier's
    found = search(
        trainer,
        "batch_size",
        "scale_batch_size",
        model,
        datamodule,
        mode=mode,
        steps_per_trial=steps_per_trial,
        init_val=init_val,
        max_trials=max_trials,
        max_val=max_val,
    )
    train = datamodule.splits["train"]  # type: ignore[attr-defined]  # an ImageDataModule's
    limit, verdict = batch_size_limit(found, len(train), mode, init_val, max_trials, max_val)
    record = {"batch_size": found, "limited_by": limit}
    if publish(
        trainer, output_dir, "batch_size", record, scalars={} if found is None else {"tune/batch_size": found}
    ):
        log.info("batch_size: %s. Train with: data.batch_size=%s", verdict, found)
    return {"tune/batch_size": found}


def batch_size_limit(
    found: int | None, n_train: int, mode: str, init_val: int, max_trials: int, max_val: int
) -> tuple[str, str]:
    """What stopped the search at `found` (memory, the cap tune.max_val, the training split's size or
    tune.max_trials), and a sentence that says so: only the first is the largest batch that fits."""
    if found is None:  # Lightning's scaler returns None when it runs no search
        return "none", "no search ran"
    if found >= n_train:
        return "train split", (
            f"a batch of {found} holds the whole training split ({n_train} images) without running out of memory; "
            "larger batches are the same batch"
        )
    if found >= max_val:  # Lightning stops on reaching the cap, before running a step at that size
        return "max_val", (
            f"the search stopped at its cap tune.max_val={max_val} without running out of memory: the largest "
            "batch that fits is larger (raise tune.max_val to find it)"
        )
    if mode == "power" and found == init_val * 2 ** (max_trials - 1):
        return "max_trials", (
            f"the search stopped after tune.max_trials={max_trials} doublings without running out of memory: the "
            "largest batch that fits is larger (raise tune.max_trials to find it)"
        )
    return "memory", f"the largest batch that fits in memory is {found} (a larger one ran out)"
