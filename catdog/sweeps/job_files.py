"""What each job of a sweep leaves in its dir for the summary (catdog.sweeps.summary): its metrics, its
per-image predictions, a note that its Optuna trial was pruned, or the record of its failure."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

from catdog.io import write_json_atomic

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.json"
FAILURE_FILE = "failed.json"
# written beside metrics.json by a job whose Optuna trial was pruned (catdog/callbacks/pruning.py): not a result
PRUNED_FILE = "pruned.json"


def predictions_file(run_dir: Path, split: str) -> Path:
    """The per-image predictions of a split (catdog.callbacks.predictions), which the significance tests pair."""
    return Path(run_dir) / f"predictions_{split}.csv"


def record_failure(exc: BaseException, message: str | None = None) -> Path:
    """Log the traceback into the job's log and write failed.json beside it, so the sweep can go on."""
    from hydra.core.hydra_config import HydraConfig

    job_dir = Path(HydraConfig.get().runtime.output_dir)
    error = message or f"{type(exc).__name__}: {exc}"
    log.error("Job failed: %s", error, exc_info=exc)
    job_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        job_dir / FAILURE_FILE,
        {"error": error, "type": type(exc).__name__, "traceback": "".join(traceback.format_exception(exc))},
    )
    return job_dir / FAILURE_FILE
