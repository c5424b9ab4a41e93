"""`model.freeze=N`: the network's first N stages keep their weights while the rest trains (fine-tuning a network
started with init_from). Written over a network's ordered stages, so any kind of network that lists its stages can
be frozen the same way; a frozen stage's batch norms keep their running statistics too (they stay in eval mode)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from itertools import accumulate

from torch import nn


def convnet_stages(net: nn.Sequential, convs: Sequence[int]) -> list[nn.Sequential]:
    """The ConvNet's conv stages in order (`convs`: convolutions per stage): each stage's convolutions and batch norms,
    the layers of the stage that hold weights or statistics (its pooling and activations hold none)."""
    ends = list(accumulate(convs))  # the count of convolutions up to each stage's end
    stages: list[list[nn.Module]] = [[] for _ in convs]
    seen = 0
    for layer in net:
        seen += isinstance(layer, nn.Conv2d)
        if isinstance(layer, nn.Conv2d | nn.BatchNorm2d) and 0 < seen <= ends[-1]:
            stages[bisect_left(ends, seen)].append(layer)
    return [nn.Sequential(*layers) for layers in stages]


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
