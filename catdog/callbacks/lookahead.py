"""Lookahead (Zhang et al., 2019), as airbench's CIFAR-10 speed records use it: every `k` optimizer steps the slow
weights move part of the way to the fast (trained) ones, and training goes on from the slow weights.

After step s of S, the slow weights keep `(1 - alpha) * (s / S) ** ramp` of themselves: ramp=0 is the paper's
constant alpha; airbench94 uses k=5, alpha=1-0.95**5 (0.23) and ramp=3, so lookahead does nothing at first and
averages most near the end. The last optimizer step syncs too, so training ends on the slow weights. Parameters and floating-point
buffers (batch-norm statistics) are both averaged, and the slow weights travel in checkpoints, so a resume goes on.
"""

from __future__ import annotations

import math
from typing import Any, cast

import pytorch_lightning as pl
import torch

from catdog.errors import CatdogError


def tracked(module: torch.nn.Module) -> list[torch.Tensor]:
    """The tensors lookahead averages: parameters and floating-point buffers, in state_dict order."""
    return [t for t in module.state_dict(keep_vars=True).values() if t.is_floating_point()]


class Lookahead(pl.Callback):
    """Every `k` optimizer steps: slow = lerp(slow, fast, 1 - keep), then fast = slow."""

    def __init__(self, k: int = 5, alpha: float = 0.5, ramp: float = 0.0):
        if k < 1 or not 0 < alpha <= 1 or ramp < 0:
            raise CatdogError(
                f"callbacks.lookahead: k={k}, alpha={alpha}, ramp={ramp}: need k >= 1, 0 < alpha <= 1, ramp >= 0 "
                "(e.g. k=5, alpha=0.5, ramp=0)."
            )
        self.k, self.alpha, self.ramp = k, alpha, ramp
        self.slow: list[torch.Tensor] | None = None
        self.total = self.last_sync = 0

    def keep(self, step: int, total: int) -> float:
        """The share of the slow weights that a sync after optimizer step `step` of `total` keeps (total 0: no
        known end, so the ramp is over)."""
        progress = min(step / total, 1.0) if total else 1.0
        return (1 - self.alpha) * progress**self.ramp

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """After any checkpoint is restored and the model is on its device."""
        if self.slow is None:
            self.slow = [t.detach().clone() for t in tracked(pl_module)]
        else:  # restored from a checkpoint, maybe onto another device
            self.slow = [s.to(t.device) for s, t in zip(self.slow, tracked(pl_module))]
        total = trainer.estimated_stepping_batches
        self.total = int(total) if math.isfinite(total) else 0
        self.last_sync = trainer.global_step

    @torch.no_grad()
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx
    ) -> None:
        step = trainer.global_step
        # once per optimizer step (several batches make one with accumulate_grad_batches), and at the last one
        if step == self.last_sync or (step % self.k and step != self.total):
            return
        self.last_sync = step
        fast = [f.detach() for f in tracked(pl_module)]
        slow = cast(list[torch.Tensor], self.slow)  # made in on_train_start
        torch._foreach_lerp_(slow, fast, 1 - self.keep(step, self.total))
        torch._foreach_copy_(fast, slow)

    def state_dict(self) -> dict[str, Any]:
        return {"slow": self.slow}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.slow = state_dict["slow"]
