"""Audit labelled photos: `python -m catdog.audit data.source=PATH [overrides]` (README: "Audit your photos first").

Trains data.folds models (configs/audit.yaml: experiment=fast at 48 px, 5 folds), scores every photo's label with
the model that did not train on it (catdog/audit/folds.py) and how unusual it is by its image statistics, with no
model (catdog/audit/image_stats.py; docs/audit.md says what the scores mean and how many photos they need), and
writes into the run dir: audit.csv (every photo once,
worst first: path,label,suggested,label_score,outlier_score,duplicate_group,issue,sha256), audit.html and audit.png
(the `audit.top` worst) and the same sheet in TensorBoard. `data.exclude=<run dir>/audit.csv` then leaves the
flagged photos out of a training run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from catdog.shell.cli import run_entry

# named, not __name__: run as `python -m catdog.audit`, this module is __main__
log = logging.getLogger("catdog.audit")


def audit(cfg: DictConfig) -> list[dict]:
    """Train the fold models, rank every photo, write audit.csv and the gallery; returns the rows, worst first."""
    # imported here: torch and Lightning take seconds to import, and --help and --cfg job return before this;
    # cleanlab first, so a missing one stops the audit before the folds train
    import cleanlab  # noqa: F401

    from catdog.audit.folds import check_folds, out_of_fold
    from catdog.audit.gallery import write_gallery
    from catdog.audit.image_stats import OUTLIER_MIN_PHOTOS, outlier_scores
    from catdog.audit.scores import COLUMNS, audit_rows, summary, what_scores_need
    from catdog.data.dataset import prepare_dataset
    from catdog.data.settings import DataSettings
    from catdog.io import replace_atomic, write_csv
    from catdog.rules import invalid, is_int
    from catdog.run.checks import validate
    from catdog.run.training import instantiate_group

    validate(cfg)
    top = cfg.get("audit", {}).get("top", 48)
    if not (is_int(top) and top >= 0):
        raise invalid("audit.top", top, "a number of photos (0 = no gallery)")
    arrays = prepare_dataset(DataSettings.from_config(cfg.data))
    folds = check_folds(cfg, arrays)
    output_dir = Path(cfg.paths.output_dir)
    outlier_score, outlier = outlier_scores(arrays.images)
    probs = out_of_fold(cfg, arrays, folds, output_dir)
    result = audit_rows(arrays, probs, outlier_score, outlier)
    basis, warnings = what_scores_need(len(arrays.labels), arrays.labels, probs, OUTLIER_MIN_PHOTOS)
    log.info("Audit scores: %s", basis)
    for warning in warnings:
        log.warning(warning)
    rows = [[r[c] for c in COLUMNS] for r in result.rows]
    output_dir.mkdir(parents=True, exist_ok=True)
    replace_atomic(output_dir / "audit.csv", lambda f: write_csv(f, COLUMNS, rows), binary=False)
    write_gallery(arrays, result.rows, result.order, top, output_dir, instantiate_group(cfg.get("logger")))
    log.info(
        "Audit of %s: %s. Written to %s (audit.csv, audit.html, audit.png); train without the flagged photos "
        "with data.exclude=%s",
        cfg.data.source,
        summary(result.rows),
        output_dir,
        output_dir / "audit.csv",
    )
    return result.rows


if __name__ == "__main__":
    run_entry(audit, "audit", usage=__doc__)
