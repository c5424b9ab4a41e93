"""How well probabilities mean what they say: the expected calibration error and a reliability diagram, before and
after temperature scaling (the temperature is fitted in catdog.models.temperature).
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torchmetrics.functional.classification import multiclass_calibration_error

N_BINS = 15


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = N_BINS) -> float:
    """torchmetrics' top-label ECE: the mean |accuracy - confidence| over equal-width confidence bins."""
    return float(multiclass_calibration_error(probs, labels, probs.shape[1], n_bins=n_bins, norm="l1"))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> dict[str, np.ndarray]:
    """Per equal-width bin of top-class probability: its mean confidence, its accuracy and its image count."""
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    which = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    seen = np.maximum(count, 1)
    return {
        "confidence": np.bincount(which, confidence, n_bins) / seen,
        "accuracy": np.bincount(which, correct.astype(float), n_bins) / seen,
        "count": count,
    }


def reliability_figure(curves: dict[str, np.ndarray], labels: np.ndarray, title: str) -> Figure:
    """Accuracy against confidence for each named set of probabilities (N, classes), with its ECE; the diagonal
    is a perfectly calibrated model."""
    fig = Figure(figsize=(5, 4.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for name, probs in curves.items():
        bins = reliability_bins(probs, labels)
        used = bins["count"] > 0
        ece = expected_calibration_error(torch.from_numpy(probs), torch.from_numpy(labels))
        ax.plot(bins["confidence"][used], bins["accuracy"][used], marker="o", label=f"{name} (ECE {ece:.3f})")
    # the top class of C classes has a probability of at least 1/C
    low = 1 / next(iter(curves.values())).shape[1]
    ax.set_xlim(low - 0.02, 1.01)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def calibration_report(
    logits: np.ndarray, labels: np.ndarray, temperature: float, title: str, split: str
) -> tuple[dict, Figure]:
    """`<split>/ece` (calibrated probabilities), `<split>/ece_uncalibrated` (T = 1), and their reliability diagram."""
    curves = {
        "calibrated": torch.from_numpy(logits / temperature).softmax(1).numpy(),
        "uncalibrated": torch.from_numpy(logits).softmax(1).numpy(),
    }
    y = torch.from_numpy(labels)
    metrics = {
        f"{split}/ece": expected_calibration_error(torch.from_numpy(curves["calibrated"]), y),
        f"{split}/ece_uncalibrated": expected_calibration_error(torch.from_numpy(curves["uncalibrated"]), y),
    }
    return metrics, reliability_figure(curves, labels, f"{title} (T = {temperature:.2f})")
