"""Seeded, stratified splitting and class balancing on label arrays: pure functions of (labels, seed)."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float = 0.0, seed: int = 0):
    """Indices for train/val/test, each class split in the same proportions; shuffled, reproducible from seed."""
    rng = np.random.default_rng(seed)
    parts = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(len(idx) * val_fraction))
        n_test = int(round(len(idx) * test_fraction))
        parts["val"].append(idx[:n_val])
        parts["test"].append(idx[n_val : n_val + n_test])
        parts["train"].append(idx[n_val + n_test :])
    return {k: rng.permutation(np.concatenate(v)).astype(np.int64) for k, v in parts.items()}


def balance(indices: np.ndarray, labels: np.ndarray, mode: str, seed: int = 0) -> np.ndarray:
    """Resample `indices` so every class is equally frequent (undersample/oversample); other modes keep them."""
    if mode not in ("undersample", "oversample"):
        return indices
    rng = np.random.default_rng(seed)
    groups = [indices[labels[indices] == c] for c in np.unique(labels[indices])]
    target = min(map(len, groups)) if mode == "undersample" else max(map(len, groups))
    picked = [
        rng.choice(g, target, replace=False)
        if len(g) >= target
        else np.concatenate([g, rng.choice(g, target - len(g))])
        for g in groups
    ]
    return rng.permutation(np.concatenate(picked)).astype(np.int64)


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Loss weights inversely proportional to class frequency (mean weight 1 over samples)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return (len(labels) / (num_classes * np.maximum(counts, 1))).astype(np.float32)
