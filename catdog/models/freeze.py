"""`model.freeze=N`: the network's first N stages keep their weights while the rest trains (fine-tuning a network
started with init_from). Written over a network's ordered stages, so any kind of network that lists its stages can
be frozen the same way; a frozen stage's batch norms keep their running statistics too (they stay in eval mode)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def freeze_stages(stages: Sequence[nn.Module], n: int) -> list[nn.Module]:
    """Take the first `n` stages out of training, in eval mode; returns them, for `hold_frozen` after each `train()`
    (Lightning restores each layer's own mode after validation, so the mode set here holds in a fit)."""
    for stage in stages[:n]:
        stage.requires_grad_(False)
    hold_frozen(stages[:n])
    return list(stages[:n])


def hold_frozen(frozen: Sequence[nn.Module]) -> None:
    """Frozen stages in eval mode (their batch norms' running statistics fixed), whatever mode the network is in."""
    for stage in frozen:
        stage.eval()
