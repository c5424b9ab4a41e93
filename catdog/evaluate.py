"""Evaluate a checkpoint on labelled images: `python -m catdog.evaluate ckpt_path=FILE data.source=PATH`.

The images are decoded as the checkpoint was trained (its resolution, channels and fast_decode, whatever data.*
says), every image of the source is used, and the run dir gets metrics.json, confusion_matrix.png and
TensorBoard events.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_auroc,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from catdog.data.cache import CachedArrays
from catdog.data.preprocess import prepare_from_config
from catdog.explain.calibration import calibration_report
from catdog.explain.robustness import robustness_accuracy, robustness_figure, robustness_table
from catdog.inference import Predictor, check_classes
from catdog.io import write_json_atomic
from catdog.run.checks import validate
from catdog.run.cli import guarded, read_overrides
from catdog.run.training import instantiate_group
from catdog.visualize import confusion_figure

log = logging.getLogger(__name__)


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """Accuracy, macro precision/recall/F1 and ROC AUC, the same per class, and the confusion matrix."""
    n = len(classes)
    per_class = {
        name: fn(probs, labels, n, average="none") for name, fn in
        (("precision", multiclass_precision), ("recall", multiclass_recall), ("f1", multiclass_f1_score),
         ("auroc", multiclass_auroc))
    }  # fmt: skip
    matrix = multiclass_confusion_matrix(probs, labels, n)
    return {
        "test/acc": float(multiclass_accuracy(probs, labels, n, average="micro")),
        **{f"test/{name}": float(values.mean()) for name, values in per_class.items()},
        "per_class": {
            c: {"support": int(matrix[i].sum()), **{name: float(v[i]) for name, v in per_class.items()}}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": matrix.tolist(),
    }


def score(cfg: DictConfig) -> tuple[Predictor, CachedArrays, np.ndarray]:
    """The checkpoint, the images of data.source decoded as it was trained, and its (uncalibrated) logits for
    each: `predictor.calibrated(logits)` are its probabilities."""
    predictor = Predictor.from_checkpoint(cfg.ckpt_path)
    shape = {"resolution": predictor.resolution, "channels": predictor.channels}
    arrays = prepare_from_config(cfg.data, **shape, fast_decode=predictor.fast_decode)
    check_classes(arrays.classes, predictor.classes, cfg.data.source, cfg.ckpt_path)
    batch = cfg.data.batch_size
    logits = np.concatenate(
        [predictor.logits(arrays.images[i : i + batch]) for i in range(0, len(arrays.labels), batch)]
    )
    return predictor, arrays, logits


def evaluate(cfg: DictConfig) -> dict:
    """Metrics of the checkpoint on every image of data.source; written to the run dir and TensorBoard."""
    validate(cfg)
    predictor, arrays, logits = score(cfg)
    probs = predictor.calibrated(logits)
    results = classification_metrics(
        torch.from_numpy(probs), torch.from_numpy(arrays.labels), predictor.classes
    )
    calibration, reliability = calibration_report(
        logits, arrays.labels, predictor.temperature, Path(cfg.ckpt_path).name
    )
    figures, robustness = {"reliability_diagram": reliability}, {}
    if cfg.get("robustness"):
        robustness = robustness_accuracy(
            predictor.probabilities, arrays.images, arrays.labels, cfg.data.batch_size
        )
        log.info("Accuracy under corruptions (severity 0 = clean):\n%s", robustness_table(robustness))
        figures["robustness"] = robustness_figure(robustness, Path(cfg.ckpt_path).name)
    metrics = {
        **{k: v for k, v in results.items() if k.startswith("test/")},
        **calibration,
        "temperature": predictor.temperature,
        "n_images": int(arrays.report["n_images"]),
        "n_skipped": int(arrays.report["n_skipped"]),
        "classes": predictor.classes,
        **{k: v for k, v in results.items() if not k.startswith("test/")},
        "checkpoint": str(cfg.ckpt_path),
        "source": str(arrays.report["source"]),
        "resolution": predictor.resolution,
        "channels": predictor.channels,
        **robustness,
    }
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output_dir / "metrics.json", metrics)
    title = f"{Path(cfg.ckpt_path).name}: accuracy {metrics['test/acc']:.3f}"
    figure = confusion_figure(np.array(results["confusion_matrix"]), predictor.classes, title)
    figure.savefig(output_dir / "confusion_matrix.png")
    for name, fig in figures.items():
        fig.savefig(output_dir / f"{name}.png")
    scalars = {k: v for k, v in metrics.items() if k.startswith(("test/", "robustness/"))}
    for c in predictor.classes:
        scalars.update(
            {f"test/{name}_{c}": v for name, v in results["per_class"][c].items() if name != "support"}
        )
    for lg in instantiate_group(cfg.get("logger")):
        lg.log_metrics(scalars, step=0)
        if hasattr(lg.experiment, "add_figure"):
            lg.experiment.add_figure("test/confusion_matrix", figure, 0)
            for name, fig in figures.items():
                lg.experiment.add_figure(f"test/{name}", fig, 0)
        lg.finalize("success")
    log.info("Evaluated %s on %d images (%d skipped): %s; written to %s", cfg.ckpt_path, metrics["n_images"],
             metrics["n_skipped"], json.dumps(scalars), output_dir)  # fmt: skip
    return metrics


@hydra.main(version_base="1.3", config_path="../configs", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    guarded(evaluate, cfg)


if __name__ == "__main__":
    sys.argv[1:] = guarded(read_overrides, sys.argv[1:])
    main()
