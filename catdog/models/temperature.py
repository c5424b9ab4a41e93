"""Temperature scaling (Guo et al., 2017): one number T, fitted on the validation split, that makes
softmax(logits / T) mean what it says. The classifier refits it at each validation; catdog.explain.calibration
checks it (ECE, reliability diagram).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

# a net right on every validation image drives T towards 0 (and one always wrong towards infinity): kept finite
T_RANGE = (0.05, 20.0)
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
