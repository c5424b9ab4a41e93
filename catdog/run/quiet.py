"""Lightning's lines a newcomer mistakes for errors, left out of catdog's runs.

- Its cloud-service tips ("💡 Tip: For seamless cloud logging ... litlogger", "... uploads ... litmodels").
- The `srun` hint ("The `srun` command is available on your system but is not used"), printed on any machine that
  has SLURM's tools, outside a SLURM allocation (no SLURM_JOB_ID): there it is no advice. Inside one it stays.
(Lightning's "Total FLOPs: 0" is fixed at its source: ImageClassifier gives Lightning an example input to count on.)
"""

from __future__ import annotations

import logging
import os
import warnings

from catdog.compat import lightning_info_logger

TIPS = ("💡 Tip: For seamless cloud",)
SRUN_HINT = r"The `srun` command is available on your system but is not used"


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
