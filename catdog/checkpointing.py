"""Checkpoints a kill cannot spoil and that resume exactly: atomic writes, a save on pre-emption, RNG state.

A checkpoint file is either the previous complete one or the new complete one (written beside it, fsynced and
renamed), a full disk leaves the previous file in place with one message, SIGTERM or Ctrl-C saves
`checkpoints/last.ckpt` before the process exits, and the random state of augmentation and dropout travels in
the checkpoint so a resumed run draws the same numbers an uninterrupted one would.
"""

from __future__ import annotations

import errno
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins import TorchCheckpointIO

from catdog.errors import CatdogError

log = logging.getLogger(__name__)
RNG_KEY = "catdog_rng_states"


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into a temporary file in the checkpoint's own folder, fsync, then os.replace.

    Lightning's default writes through a temporary file in the system temp dir and moves it, which is a copy (not
    atomic) when /tmp is another disk, and fails on a full /tmp even when the output disk has room.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        # one writer per run dir (rank zero), so a fixed temporary name cannot pile up
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            if e.errno == errno.ENOSPC:
                raise CatdogError(
                    f"No space left on the device while writing the checkpoint {path}; the previous checkpoint "
                    "there is intact. Free some space, or put the runs on a larger disk (paths.log_dir=/big/disk, "
                    "or hydra.run.dir=...), then resume with ckpt_path=last."
                ) from e
            raise


class SaveOnInterrupt(pl.Callback):
    """When the process is told to stop: SIGTERM (pre-emption, scancel, `kill`; Lightning raises SIGTERMException),
    submitit's requeue on SIGUSR2 (sys.exit) or Ctrl-C: save `<dirpath>/<filename>.ckpt`, mid-epoch if need be, so
    `ckpt_path=last` (or `auto`) resumes the run. Errors save nothing: their state may be broken."""

    def __init__(self, dirpath: str, filename: str = "last"):
        self.path = Path(dirpath) / f"{filename}.ckpt"

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SystemExit | KeyboardInterrupt):  # SIGTERMException is a SystemExit
            trainer.save_checkpoint(self.path)
            log.warning("Interrupted: saved %s. Resume with ckpt_path=last (same hydra.run.dir).", self.path)


def rng_states() -> dict[str, Any]:
    """The global random states that augmentation and dropout draw from (Lightning's checkpoints omit them)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = (
        name,
        torch.from_numpy(keys.astype(np.int64)),
        pos,
        has_gauss,
        gauss,
    )  # loads with weights_only
    states = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
