"""Room for Hydra's own files: Hydra writes a run's (or sweep's) .hydra/ files before catdog's code runs, so a disk
that is already full would fail there with Hydra's traceback; the callback here checks first and says it in one
line (configs/hydra/default.yaml installs it)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from catdog.io import disk_full_error
from catdog.shell.cli import DISK_FULL_FIX, report_and_exit

# Hydra's own files of a run (.hydra/config.yaml, hydra.yaml, overrides.yaml) take ~8 KB
HYDRA_FILES_BYTES = 16 * 1024


def check_free_space(output_dir: str) -> None:
    """Stop with the full-disk message when the disk that will hold `output_dir` has no room for Hydra's files."""
    path = Path(output_dir).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if shutil.disk_usage(existing).free < HYDRA_FILES_BYTES:
        report_and_exit(disk_full_error(path, DISK_FULL_FIX))


class RunDirSpace(Callback):
    """Hydra callback: the free-space check of the run dir, or of the sweep dir before a multirun."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_free_space(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_free_space(config.hydra.sweep.dir)
