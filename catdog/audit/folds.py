"""The audit's out-of-sample view of every photo: K fold models (data.folds), each photo scored by a model that
never trained on it.

Fold i's model trains on the photos outside fold i and scores fold i (its val split): its class probabilities
(calibrated, with the preset's flip TTA). Photos no fold trains on (label conflicts, data.exclude, a test split) get
the mean of the K models' probabilities. (The outlier score does not come from these models: image_stats.py.)
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from catdog.batching import batches
from catdog.checkpoint import check_classes
from catdog.data.cache import CachedArrays
from catdog.data.datamodule import ImageDataModule
from catdog.data.settings import DataSettings
from catdog.errors import CatdogError
from catdog.inference import Predictor
from catdog.run.training import train

log = logging.getLogger(__name__)


def check_folds(cfg: DictConfig, arrays: CachedArrays) -> int:
    """data.folds as an int >= 2, and every class with at least that many photos: else one clear error."""
    folds = cfg.data.get("folds")
    if not folds:
        raise CatdogError(
            "data.folds=null: the audit scores each photo with a model trained without it, so it needs folds "
            "(data.folds=5, the default of configs/audit.yaml)."
        )
    counts = np.bincount(arrays.labels, minlength=len(arrays.classes))
    for name, n in zip(arrays.classes, counts.tolist()):
        if n < folds:
            raise CatdogError(
                f"data.source={cfg.data.source}: class {name} has {n} photos, fewer than data.folds={folds}: "
                "each fold needs photos of every class. Add photos or lower data.folds."
            )
    return int(folds)


def fold_config(cfg: DictConfig, fold: int, run_dir: Path) -> DictConfig:
    """The training config of fold `fold`: its val split is that fold, its run dir `run_dir/fold<i>`."""
    fold_cfg = copy.deepcopy(cfg)
    fold_cfg.data.fold = fold
    fold_cfg.paths.output_dir = str(run_dir / f"fold{fold}")
    return fold_cfg


def probabilities(predictor: Predictor, images: np.ndarray, batch: int) -> np.ndarray:
    """Calibrated probabilities (N, classes), `batch` images at a time."""
    return np.concatenate([predictor.probabilities(images[b]) for b in batches(len(images), batch)])


def out_of_fold(cfg: DictConfig, arrays: CachedArrays, folds: int, run_dir: Path) -> np.ndarray:
    """Train the K fold models (each in run_dir/fold<i>) and score every photo out of sample: probabilities
    (N, classes)."""
    n, classes = len(arrays.labels), len(arrays.classes)
    probs = np.zeros((n, classes))
    # the mean over the K models, for the photos no fold trains on (known once every fold is done)
    mean_probs = np.zeros((n, classes))
    never_trained = np.ones(n, dtype=bool)
    for fold in range(folds):
        log.info("Audit: fold %d of %d", fold + 1, folds)
        fold_cfg = fold_config(cfg, fold, run_dir)
        train(fold_cfg)
        datamodule = ImageDataModule(DataSettings.from_config(fold_cfg.data))
        datamodule.setup("fit")
        never_trained[np.unique(datamodule.splits["train"])] = False
        checkpoint = Path(fold_cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        predictor = Predictor.from_checkpoint(checkpoint, device="auto")  # the GPU where torch sees one
        check_classes(arrays.classes, predictor.classes, cfg.data.source, str(checkpoint))
        fold_probs = probabilities(predictor, arrays.images, cfg.data.batch_size)
        val_idx = datamodule.splits["val"]
        probs[val_idx] = fold_probs[val_idx]
        mean_probs += fold_probs / folds
    if never_trained.any():
        log.info(
            "Audit: %d photos are in no fold's training split (label conflicts, data.exclude): each scored by "
            "the mean of the %d models",
            never_trained.sum(),
            folds,
        )
        probs[never_trained] = mean_probs[never_trained]
    return probs
