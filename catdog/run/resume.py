"""Stopping and resuming a run: checkpoints a kill cannot spoil, a save on pre-emption, the random state.

- A checkpoint file is the previous complete one or the new complete one, never half of either.
- SIGTERM or Ctrl-C saves `checkpoints/last.ckpt` before the process exits; during training both stop between
  batches, never inside a library's code.
- The random state of augmentation and dropout travels in the checkpoint, so a resumed run draws the same
  numbers an uninterrupted one would.
- `ckpt_path=last|auto|FILE` is resolved here, and a checkpoint that does not fit the data is refused here.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins import TorchCheckpointIO

from catdog.checkpoint import check_classes, read_checkpoint
from catdog.data.loaders import ResumableBatches
from catdog.errors import CatdogError
from catdog.io import disk_full_error, is_disk_full, replace_atomic

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written through catdog.io.replace_atomic: a temporary file in the checkpoint's own folder,
    fsynced, then renamed. Lightning's default goes through the system temp dir, which is a copy (not atomic)
    when /tmp is another disk, and fails on a full /tmp even when the output disk has room."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            replace_atomic(path, lambda f: torch.save(checkpoint, f), binary=True)
        except (OSError, RuntimeError) as e:
            if is_disk_full(e):
                raise disk_full_error(f"the checkpoint {path}", checkpoint_disk_full_fix(path)) from e
            raise


def checkpoint_disk_full_fix(path: Path) -> str:
    """What a full disk left of the run's checkpoints, and what to do: resume only where a checkpoint is intact."""
    room = "Free some space, or put the runs on a larger disk (paths.log_dir=/big/disk)"
    if path.is_file():
        return f"The previous checkpoint there is intact. {room}, then resume with ckpt_path=last."
    last = path.parent / "last.ckpt"
    if last.is_file():
        return f"{last.name} beside it is intact. {room}, then resume with ckpt_path=last."
    return f"It was this run's first checkpoint, so there is none to resume from. {room}, then run again."


class SaveOnInterrupt(pl.Callback):
    """When the process is told to stop: SIGTERM (pre-emption, scancel, `kill`; Lightning raises SIGTERMException),
    submitit's requeue on SIGUSR2 (sys.exit) or Ctrl-C: save `<dirpath>/<filename>.ckpt`, mid-epoch if need be, so
    `ckpt_path=last` (or `auto`) resumes the run. Errors save nothing: their state may be broken.

    During training a Ctrl-C stops the run at the next batch's start, as SIGTERM does at a batch's end: Python
    raises KeyboardInterrupt wherever the main thread is, and with it landing anywhere, 6 of 182 Ctrl-Cs of a tiny
    run on a busy 2-core machine hung at exit, in TensorBoard's writer close, its thread never taking the stop from
    its queue. A second Ctrl-C stops at once."""

    def __init__(self, dirpath: str, filename: str = "last"):
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.pressed = False
        self._previous: Any = None  # the SIGINT handler to put back; None: ours is not installed

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # only where Ctrl-C would raise KeyboardInterrupt (not in a background job, which ignores it)
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.pressed, self._previous = False, signal.signal(signal.SIGINT, self.ctrl_c)

    def ctrl_c(self, signum: int, frame: Any) -> None:
        """The SIGINT handler while training: the first Ctrl-C is noted, the second interrupts where it lands."""
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True
        log.warning("Ctrl-C: stopping before the next batch (press it again to stop at once).")

    def _stop_if_pressed(self) -> None:
        if self.pressed:
            raise KeyboardInterrupt

    def on_train_batch_start(self, *args: Any) -> None:
        self._stop_if_pressed()

    def on_validation_batch_start(self, *args: Any) -> None:
        self._stop_if_pressed()

    def _restore_handler(self) -> None:
        """Ctrl-C raises at once again (after training, or after an error: a notebook keeps its Ctrl-C)."""
        if self._previous is not None and signal.getsignal(signal.SIGINT) == self.ctrl_c:
            signal.signal(signal.SIGINT, self._previous)
        self._previous = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_handler()
        self._stop_if_pressed()  # pressed after the last batch: the run stops here, before its test

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # after an error Ctrl-C raises at once again; after a KeyboardInterrupt Lightning has set SIGINT to be ignored
        # while it shuts down, and that stays
        self._restore_handler()
        if isinstance(exception, SystemExit | KeyboardInterrupt):  # SIGTERMException is a SystemExit
            # Ctrl-C can cut a training step short: Lightning resumes at the last processed batch, so the loader's
            # position must not count the cut one (SIGTERM stops between batches: nothing to take back)
            progress = trainer.fit_loop.epoch_loop.batch_progress.current
            loader = trainer.train_dataloader
            if isinstance(loader, ResumableBatches) and progress.ready > progress.processed:  # type: ignore[attr-defined]  # a _ProcessedTracker
                loader.take_back(progress.ready - progress.processed)  # type: ignore[attr-defined]
            trainer.save_checkpoint(self.path)
            log.warning("Interrupted: saved %s. Resume with ckpt_path=last (same hydra.run.dir).", self.path)


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str | Path) -> str | None:
    """The checkpoint to resume: `last` is this run dir's checkpoints/last.ckpt and must exist; `auto` is that file
    if it exists, else a fresh start (for jobs a cluster requeues after pre-emption, with the same overrides)."""
    if ckpt_path is None:
        return None
    last = Path(output_dir) / "checkpoints" / "last.ckpt"
    if str(ckpt_path) == "auto":
        return str(last) if last.is_file() else None
    path = last if str(ckpt_path) == "last" else Path(str(ckpt_path)).expanduser()
    if not path.is_file():
        hint = (
            "ckpt_path=last resumes the run in the dir given by hydra.run.dir: "
            "run `python train.py hydra.run.dir=<old run dir> ckpt_path=last ...`."
            if path is last
            else "Give the path of a .ckpt file (e.g. <run dir>/checkpoints/last.ckpt)."
        )
        raise CatdogError(f"ckpt_path={ckpt_path}: no checkpoint at {path}. {hint}")
    return str(path)


def check_resume(ckpt_path: str, classes: list[str], source: str) -> int:
    """One clear message if the checkpoint to resume does not fit the data; else the step its logging stopped at."""
    checkpoint = read_checkpoint(ckpt_path)
    check_classes(
        classes,
        checkpoint["hyper_parameters"]["classes"],
        source,
        ckpt_path,
        fix="Resume on the data it was trained on, or start a new run without ckpt_path.",
    )
    try:
        step = checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"]
    except KeyError as e:
        raise CatdogError(
            f"ckpt_path={ckpt_path}: holds weights but no training state, so it cannot be resumed. "
            "Start a new run without ckpt_path (or use it with evaluate/predict/export)."
        ) from e
    log.info("Resuming from %s (saved in epoch %d, step %d)", ckpt_path, checkpoint["epoch"], step)
    return step
