"""Temperature scaling (Guo et al., 2017): one number T, fitted on the validation split, that makes
softmax(logits / T) mean what it says; the expected calibration error and a reliability diagram to check it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torchmetrics.functional.classification import multiclass_calibration_error

# a net right on every validation image drives T towards 0 (and one always wrong towards infinity): kept finite
T_RANGE = (0.05, 20.0)
N_BINS = 15
# T is learnt from the val photos the net gets wrong (or nearly): with k of them it is off by ~1/sqrt(k). Simulated
# (a binary net with known T, 60 fits each): with 2-5 wrong a fit made the test ECE of a calibrated net worse by
# 0.01-0.03 (worse by over 0.01 in 45-75% of fits); with ~20 wrong it cost a calibrated net 0.005-0.009 and gained
# an overconfident one (T 1.5-2.5) 0.01-0.09 nearly always. A real case: 30 val photos, ECE 0.005 -> 0.059. Below
# MIN_WRONG, T stays 1.
MIN_WRONG = 20


class Calibration(NamedTuple):
    """The temperature to divide logits by, and why it is 1 when the fit was not used (None when it was)."""

    temperature: float
    problem: str | None = None  # "few wrong" | "at bound": one warning per kind and run is enough
    detail: str = ""


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 200) -> float:
    """The T > 0 minimising the cross-entropy of softmax(logits / T) on `labels`: LBFGS on log T, from T = 1."""
    if len(labels) == 0:
        return 1.0
    with torch.inference_mode(False), torch.enable_grad():
        # clones made outside inference mode, so that autograd may save them (Lightning validates inside it)
        logits, labels = logits.detach().float().cpu().clone(), labels.detach().long().cpu().clone()
        log_t = torch.zeros(1, requires_grad=True)
        optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(logits / log_t.exp(), labels)
            loss.backward()
            return loss

        optimizer.step(closure)
    t = float(log_t.detach().exp())
    return float(np.clip(t, *T_RANGE)) if np.isfinite(t) else 1.0


def calibrate(logits: torch.Tensor, labels: torch.Tensor) -> Calibration:
    """The fitted temperature where it can be trusted; else T = 1 (uncalibrated) and what is wrong: fewer than
    MIN_WRONG wrong predictions to fit on, or a fit that ran into the bound of T_RANGE (the predictions are about
    chance, early in training, or right with certainty)."""
    wrong, n = int((logits.argmax(1) != labels).sum()), len(labels)
    if wrong < MIN_WRONG:
        return Calibration(
            1.0,
            "few wrong",
            f"the val split has {wrong} wrong predictions of {n} (a fitted T needs {MIN_WRONG}: with fewer it is "
            "off by over 20% and often makes the probabilities worse)",
        )
    t = fit_temperature(logits, labels)
    if t in T_RANGE:
        return Calibration(
            1.0,
            "at bound",
            f"the fit ran into its bound T = {t:g} on {n} val photos ({wrong} wrong): the predictions are about "
            "chance (early in training?) or right with certainty",
        )
    return Calibration(t)


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
    logits: np.ndarray, labels: np.ndarray, temperature: float, title: str
) -> tuple[dict, Figure]:
    """`test/ece` (calibrated probabilities), `test/ece_uncalibrated` (T = 1), and their reliability diagram."""
    curves = {
        "calibrated": torch.from_numpy(logits / temperature).softmax(1).numpy(),
        "uncalibrated": torch.from_numpy(logits).softmax(1).numpy(),
    }
    y = torch.from_numpy(labels)
    metrics = {
        "test/ece": expected_calibration_error(torch.from_numpy(curves["calibrated"]), y),
        "test/ece_uncalibrated": expected_calibration_error(torch.from_numpy(curves["uncalibrated"]), y),
    }
    return metrics, reliability_figure(curves, labels, f"{title} (T = {temperature:.2f})")
