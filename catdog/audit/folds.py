"""The audit's out-of-sample view of every photo: K fold models (data.folds), each photo scored by a model that
never trained on it, and an outlier score from the features of that model.

Fold i's model trains on the photos outside fold i and scores fold i (its val split): its class probabilities
(calibrated, with the preset's flip TTA) and its penultimate features. Photos no fold trains on (label conflicts,
data.exclude, a test split) get the mean of the K models' probabilities and outlier scores. The outlier score is
cleanlab's OutOfDistribution on fold i's features: the mean distance to the 10 nearest training photos of fold i,
mapped to (0, 1], low = unusual; a photo is an outlier by cleanlab Datalab's own rule, an average distance above
Q3 + 1.7 IQR of the training photos' distances.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from catdog.checkpoint import check_classes
from catdog.compat import cleanlab_outlier_iqr_scale
from catdog.data.cache import CachedArrays
from catdog.data.datamodule import ImageDataModule
from catdog.data.settings import DataSettings
from catdog.errors import CatdogError
from catdog.inference import Predictor
from catdog.run.training import train

log = logging.getLogger(__name__)
NEIGHBOURS = 10  # cleanlab's default k for feature outliers


@dataclass
class OutOfFold:
    """Per photo of the cache: out-of-sample class probabilities, outlier score and outlier flag."""

    probs: np.ndarray  # (N, classes)
    outlier_score: np.ndarray  # (N,) in (0, 1], low = unusual
    outlier: np.ndarray  # (N,) bool


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


@torch.inference_mode()
def probs_and_features(predictor: Predictor, images: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities (N, classes) and the input of the last layer (N, features), `batch` at a time."""
    head = predictor.model.net[-1]
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0]))
    probs, features = [], []
    try:
        for start in range(0, len(images), batch):
            captured.clear()
            probs.append(predictor.probabilities(images[start : start + batch]))
            # with tta, the first call is the unflipped image
            features.append(captured[0].float().cpu().numpy())
    finally:
        hook.remove()
    return np.concatenate(probs), np.concatenate(features)


def outlier_scores(
    features: np.ndarray, fit: np.ndarray, scored: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab's OutOfDistribution fitted on the features of the photos `fit`; scores and outlier flags of the
    photos `scored`."""
    from cleanlab.outlier import OutOfDistribution

    k = min(NEIGHBOURS, len(fit) - 1)
    ood = OutOfDistribution({"k": k})
    own = ood.fit_score(features=features[fit], verbose=False).astype(np.float64)
    score = ood.score(features=features[scored]).astype(np.float64)
    # scores are exp(-distance / scale): Datalab's IQR rule on distances is the same rule on -log(score)
    distance_fit, distance = (-np.log(np.maximum(s, np.finfo(np.float64).tiny)) for s in (own, score))
    q1, q3 = np.percentile(distance_fit, [25, 75])
    return score, distance > q3 + cleanlab_outlier_iqr_scale() * (q3 - q1)


def out_of_fold(cfg: DictConfig, arrays: CachedArrays, folds: int, run_dir: Path) -> OutOfFold:
    """Train the K fold models (each in run_dir/fold<i>) and score every photo out of sample."""
    n, classes = len(arrays.labels), len(arrays.classes)
    probs, score = np.zeros((n, classes)), np.zeros(n)
    outlier = np.zeros(n, dtype=bool)
    # the mean over the K models, for the photos no fold trains on (known once every fold is done)
    mean_probs, mean_score, votes = np.zeros((n, classes)), np.zeros(n), np.zeros(n)
    never_trained = np.ones(n, dtype=bool)
    for fold in range(folds):
        log.info("Audit: fold %d of %d", fold + 1, folds)
        fold_cfg = fold_config(cfg, fold, run_dir)
        train(fold_cfg)
        datamodule = ImageDataModule(DataSettings.from_config(fold_cfg.data))
        datamodule.setup("fit")
        train_idx, val_idx = np.unique(datamodule.splits["train"]), datamodule.splits["val"]
        never_trained[train_idx] = False
        checkpoint = Path(fold_cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        predictor = Predictor.from_checkpoint(checkpoint, device="auto")  # the GPU where torch sees one
        check_classes(arrays.classes, predictor.classes, cfg.data.source, str(checkpoint))
        fold_probs, features = probs_and_features(predictor, arrays.images, cfg.data.batch_size)
        fold_score, fold_outlier = outlier_scores(features, train_idx, np.arange(n))
        probs[val_idx], score[val_idx], outlier[val_idx] = (
            fold_probs[val_idx],
            fold_score[val_idx],
            fold_outlier[val_idx],
        )
        mean_probs += fold_probs / folds
        mean_score += fold_score / folds
        votes += fold_outlier / folds
    if never_trained.any():
        log.info(
            "Audit: %d photos are in no fold's training split (label conflicts, data.exclude): each scored by "
            "the mean of the %d models",
            never_trained.sum(),
            folds,
        )
        probs[never_trained], score[never_trained] = mean_probs[never_trained], mean_score[never_trained]
        outlier[never_trained] = votes[never_trained] >= 0.5
    return OutOfFold(probs=probs, outlier_score=score, outlier=outlier)
