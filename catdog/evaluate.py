"""Evaluate a checkpoint on labelled images: `python -m catdog.evaluate ckpt_path=FILE [data.source=PATH]`.

The images are decoded as the checkpoint was trained (its resolution, channels, fast_decode and resize, whatever
data.* says). With data.source giving its own splits (split folders, a labels CSV), split=test (or val) scores that
split. Without data.source, the held-out split (test, else val; split=val or split=test to choose) of the data
the checkpoint was trained on is scored, rebuilt from what the checkpoint records; with one, every image of it is scored, and photos that were in
the checkpoint's training split, or copies of them, are counted as n_seen_in_training. Photos the checkpoint's training
left out (its data.exclude) and those data.exclude names here are left out of the metrics; <split>/acc_all then
scores them too. Metric names say what was scored: `test/acc`, `val/acc` (optimistic: val chose the checkpoint) or
`all/acc` (every photo of data.source); `<split>/acc_top5` too with more than 5 classes. The run dir gets
metrics.json, predictions_<split>.csv (a row per photo scored, every class's probability), confusion_matrix.png and
TensorBoard events. data.source's class folders are matched to the checkpoint's classes by name, case-blind (a
subset is fine); where the names differ, `classes='{Hund: Dog, Katze: Cat}'` maps them (docs/evaluate.md).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

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

from catdog.batching import batches
from catdog.callbacks.predictions import write_predictions
from catdog.class_match import check_mapping, class_indices
from catdog.data.cache import CachedArrays
from catdog.data.dataset import prepare_dataset, summarize
from catdog.data.duplicates import NEAR_DISTANCE
from catdog.data.settings import DataSettings, DecodeSettings
from catdog.errors import CatdogError
from catdog.explain.calibration import calibration_report
from catdog.explain.robustness import robustness_accuracy, robustness_figure, robustness_table
from catdog.held_out import excluded_photos, given_split, scored_photos, seen_in_training, training_data
from catdog.inference import Predictor
from catdog.io import save_figure, write_json_atomic
from catdog.run.checks import validate
from catdog.run.training import instantiate_group
from catdog.shell.cli import run_entry
from catdog.sweeps.job_files import predictions_file
from catdog.visualize import confusion_figure

# named, not __name__: run as `python -m catdog.evaluate`, this module is __main__
log = logging.getLogger("catdog.evaluate")


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor, classes: list[str], split: str) -> dict:
    """`<split>/acc` (and `<split>/acc_top5` with more than 5 classes), macro precision/recall/F1 and ROC AUC, the
    same per class, and the confusion matrix."""
    n = len(classes)
    per_class = {
        name: fn(probs, labels, n, average="none")
        for name, fn in (
            ("precision", multiclass_precision),
            ("recall", multiclass_recall),
            ("f1", multiclass_f1_score),
            ("auroc", multiclass_auroc),
        )
    }
    matrix = multiclass_confusion_matrix(probs, labels, n)
    top5 = {}
    if n > 5:  # top-5, as ImageNet reports it, where it says more than top-1 does
        top5[f"{split}/acc_top5"] = float(multiclass_accuracy(probs, labels, n, average="micro", top_k=5))
    # macro averages over the classes the photos hold: a folder of some of the checkpoint's classes scores those
    present = matrix.sum(1) > 0
    return {
        f"{split}/acc": float(multiclass_accuracy(probs, labels, n, average="micro")),
        **top5,
        **{f"{split}/{name}": float(values[present].mean()) for name, values in per_class.items()},
        "per_class": {
            c: {"support": int(matrix[i].sum()), **{name: float(v[i]) for name, v in per_class.items()}}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": matrix.tolist(),
    }


def warn_optimistic(split: str, seen: int | None, n: int) -> None:
    """What goes with a metric name other than `test/`: val chose the checkpoint, and `all` may hold training
    photos."""
    if split == "val":
        log.warning(
            "Scored the val split, which chose this checkpoint and fitted its temperature: val/acc and val/ece are "
            "optimistic. Train with a test split (data.test_fraction > 0) for an unbiased number."
        )
    if seen:
        log.warning(
            "%d of the %d photos scored were in the checkpoint's training split or are copies of its photos "
            "(re-saved, resized: pHash within %d bits, as the split groups copies): "
            "the metrics overstate how well it does on new photos.",
            seen,
            n,
            NEAR_DISTANCE,
        )
    elif split == "all" and seen is None:
        log.warning(
            "all/acc scores every photo of data.source, and the checkpoint records no training photos to tell "
            "whether some of them were trained on: if so, the metrics overstate how well it does on new photos."
        )


def decoded_as_trained(cfg: DictConfig, predictor: Predictor, trained_on: dict | None = None) -> CachedArrays:
    """The images of data.source decoded as the checkpoint was trained (its resolution, channels, fast_decode and
    resize, whatever data.* says; with `trained_on`, the record of its training data, all its decode settings),
    labelled as the checkpoint numbers its classes (matched by name, or as `classes=` maps the folders)."""
    settings = DataSettings.from_config(cfg.data)
    decode = DecodeSettings.from_config(trained_on) if trained_on else settings.decode
    decode = replace(
        decode,
        resolution=predictor.resolution,
        channels=predictor.channels,
        fast_decode=predictor.fast_decode,
        resize=predictor.resize,
    )
    arrays = prepare_dataset(replace(settings, decode=decode))
    log.info("Data: %s", summarize(arrays.report))
    mapping = check_mapping(cfg.get("classes"), predictor.classes, cfg.ckpt_path)
    model_index = class_indices(arrays.classes, predictor.classes, mapping, cfg.data.source, cfg.ckpt_path)
    return replace(arrays, labels=model_index[arrays.labels])


def logits_of(predictor: Predictor, arrays: CachedArrays, indices: np.ndarray, batch: int) -> np.ndarray:
    """The checkpoint's (uncalibrated) logits for the images at `indices`, `batch` at a time."""
    return np.concatenate([predictor.logits(arrays.images[indices[b]]) for b in batches(len(indices), batch)])


def evaluate(cfg: DictConfig) -> dict:
    """Metrics of the checkpoint on data.source (or its held-out split); written to the run dir and TensorBoard."""
    held_out = cfg.data.get("source") is None
    trained_on = training_data(cfg)
    validate(cfg)
    predictor = Predictor.from_checkpoint(cfg.ckpt_path, device=cfg.get("device", "auto"))
    check_mapping(cfg.get("classes"), predictor.classes, cfg.ckpt_path)  # before any photo is decoded
    arrays = decoded_as_trained(cfg, predictor, trained_on if held_out else None)
    if held_out or not cfg.get("split"):
        indices, split = scored_photos(arrays, trained_on, held_out, cfg.get("split"))
    else:
        indices, split = given_split(arrays, cfg.split, cfg.data.source)
    excluded = excluded_photos(cfg, arrays, trained_on)[indices]
    if excluded.any():
        log.info(
            "%d of the %d photos are excluded (data.exclude): left out of the metrics but %s/acc_all",
            excluded.sum(),
            len(indices),
            split,
        )
    if held_out:
        log.info(
            "No data.source given: scoring the held-out %s split (%d photos) of %s, the data %s was trained on",
            split,
            len(indices),
            cfg.data.source,
            cfg.ckpt_path,
        )
    seen = seen_in_training(arrays, indices, trained_on)
    warn_optimistic(split, seen, len(indices))
    all_logits = logits_of(predictor, arrays, indices, cfg.data.batch_size)
    all_labels = arrays.labels[indices]
    everything = {}
    if excluded.any():
        everything = {
            f"{split}/acc_all": float((all_logits.argmax(1) == all_labels).mean()),
            "n_excluded": int(excluded.sum()),
        }
    logits, labels, indices = all_logits[~excluded], all_labels[~excluded], indices[~excluded]
    if not len(indices):
        raise CatdogError(
            f"data.exclude={cfg.data.get('exclude')}: every photo scored is excluded; nothing is left to score."
        )
    probs = predictor.calibrated(logits)
    results = classification_metrics(
        torch.from_numpy(probs), torch.from_numpy(labels), predictor.classes, split
    )
    calibration, reliability = calibration_report(
        logits, labels, predictor.temperature, Path(cfg.ckpt_path).name, split
    )
    figures, robustness = {"reliability_diagram": reliability}, {}
    if cfg.get("robustness"):
        robustness = robustness_accuracy(
            predictor.probabilities,
            arrays.images[np.sort(indices)],
            arrays.labels[np.sort(indices)],
            cfg.data.batch_size,
        )
        log.info("Accuracy under corruptions (severity 0 = clean):\n%s", robustness_table(robustness))
        figures["robustness"] = robustness_figure(robustness, Path(cfg.ckpt_path).name)
    metrics = {
        **{k: v for k, v in results.items() if k.startswith(f"{split}/")},
        **everything,
        **calibration,
        "temperature": predictor.temperature,
        "split": split,
        "n_images": len(indices),
        "n_seen_in_training": seen,
        "n_skipped": int(arrays.report["n_skipped"]),
        "classes": predictor.classes,
        **{k: v for k, v in results.items() if not k.startswith(f"{split}/")},
        "checkpoint": str(cfg.ckpt_path),
        "source": str(arrays.report["source"]),
        "resolution": predictor.resolution,
        "channels": predictor.channels,
        **robustness,
    }
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output_dir / "metrics.json", metrics)
    photos = [arrays.photos["path"][i] for i in indices]
    write_predictions(predictions_file(output_dir, split), photos, predictor.classes, labels, probs)
    title = f"{Path(cfg.ckpt_path).name}: {split} accuracy {metrics[f'{split}/acc']:.3f}"
    figure = confusion_figure(np.array(results["confusion_matrix"]), predictor.classes, title)
    save_figure(output_dir / "confusion_matrix.png", figure)
    for name, fig in figures.items():
        save_figure(output_dir / f"{name}.png", fig)
    scalars = {k: v for k, v in metrics.items() if k.startswith((f"{split}/", "robustness/"))}
    for c in predictor.classes:
        scalars.update(
            {f"{split}/{name}_{c}": v for name, v in results["per_class"][c].items() if name != "support"}
        )
    for lg in instantiate_group(cfg.get("logger")):
        lg.log_metrics(scalars, step=0)
        if hasattr(lg.experiment, "add_figure"):
            lg.experiment.add_figure(f"{split}/confusion_matrix", figure, 0)
            for name, fig in figures.items():
                lg.experiment.add_figure(f"{split}/{name}", fig, 0)
        lg.finalize("success")
    log.info(
        "Evaluated %s on %d images (%d skipped): %s; written to %s",
        cfg.ckpt_path,
        metrics["n_images"],
        metrics["n_skipped"],
        json.dumps(scalars),
        output_dir,
    )
    return metrics


if __name__ == "__main__":
    run_entry(evaluate, "evaluate", usage=__doc__)
