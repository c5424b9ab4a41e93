"""Lines a newcomer mistakes for errors, or reads twice, left out of catdog's runs.

- Its cloud-service tips ("💡 Tip: For seamless cloud logging ... litlogger", "... uploads ... litmodels").
- The `srun` hint ("The `srun` command is available on your system but is not used"), printed on any machine that
  has SLURM's tools, outside a SLURM allocation (no SLURM_JOB_ID): there it is no advice. Inside one it stays.
- TensorBoard's writer thread's own traceback of a full disk: the main thread meets the same error and reports it in
  one line (catdog.shell.cli).
- Other libraries' INFO and DEBUG lines: TensorBoard's "No path found after <events file>", one per job when a
  sweep's summary reads the learning curves, and under `debug=*` (root logger at DEBUG) matplotlib's font search and
  fsspec's "open file" lines. Their warnings and errors still print.
(Lightning's "Total FLOPs: 0" is fixed at its source: ImageClassifier gives Lightning an example input to count on.)
"""

from __future__ import annotations

import logging
import os
import threading
import warnings

from catdog.compat import lightning_info_logger
from catdog.io import is_disk_full

TIPS = ("💡 Tip: For seamless cloud",)
SRUN_HINT = r"The `srun` command is available on your system but is not used"
# loggers of libraries catdog calls whose INFO/DEBUG lines say nothing to a user of catdog (Lightning's, torch's and
# Hydra's own INFO lines are kept)
LIBRARIES = ("matplotlib", "PIL", "fsspec", "tensorboard", "urllib3")


class DropTips(logging.Filter):
    """Leaves out Lightning's advertisements of its cloud services."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(TIPS)


def quiet_lightning() -> None:
    """Install the filters (idempotent: one of each, however many runs a process makes)."""
    logger = lightning_info_logger()
    if not any(isinstance(f, DropTips) for f in logger.filters):
        logger.addFilter(DropTips())
    if "SLURM_JOB_ID" not in os.environ:
        from pytorch_lightning.utilities.warnings import PossibleUserWarning

        warnings.filterwarnings("ignore", message=SRUN_HINT, category=PossibleUserWarning)


def quiet_libraries() -> None:
    """Other libraries' loggers at WARNING, whatever level the root logger has (`debug=*` sets DEBUG)."""
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


def quiet_disk_full_in_threads() -> None:
    """Leave out a thread's traceback of a full disk (see the module's docstring); any other error still prints."""
    default = threading.excepthook

    def hook(args) -> None:
        if not is_disk_full(args.exc_value):
            default(args)

    threading.excepthook = hook
