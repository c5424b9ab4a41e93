"""The conv/pool stack and dense head, built from a ConvNetSpec, with sizes computed rather than typed."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from catdog.models.spec import ACTIVATIONS, POOL_TYPES, ConvNetSpec

ACTIVATION_LAYERS = dict(zip(ACTIVATIONS, (nn.ReLU, nn.GELU, nn.SiLU, nn.LeakyReLU), strict=True))
POOL_LAYERS = dict(zip(POOL_TYPES, (nn.MaxPool2d, nn.AvgPool2d), strict=True))


class ScaleInput(nn.Module):
    """uint8 images in, normalized floats out, so checkpoints and exports take raw pixels."""

    mean: torch.Tensor  # buffers, declared for the type checker (Module.__getattr__ says `Tensor | Module`)
    std: torch.Tensor

    def __init__(
        self, channels: int, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
    ):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean or [0.0] * channels).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std or [1.0] * channels).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std


def build_convnet(
    spec: ConvNetSpec,
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> nn.Sequential:
    """conv stages -> (flatten | global average pool) -> dense layers -> logits; uint8 images in."""
    activation = ACTIVATION_LAYERS[spec.activation]
    layers: list[nn.Module] = [ScaleInput(spec.in_channels, mean, std)]
    prev = spec.in_channels

    def pool() -> list[nn.Module]:
        return [POOL_LAYERS[spec.pool_type](spec.pool)] if spec.pool > 1 else []

    for out, k, convs in zip(spec.channels, spec.kernels, spec.convs, strict=True):
        for i in range(convs):
            padding = "same" if spec.padding == "same" else 0
            layers.append(nn.Conv2d(prev, out, k, padding=padding, bias=not spec.batchnorm))
            last = i == convs - 1
            # pool_after_conv: batch norm and activation then run on a quarter of the pixels (pool 2), the
            # memory-bound passes that take ~40% of a fast step on a 2-core CPU (RESULTS.md, efficiency)
            layers += pool() if last and spec.pool_after_conv else []
            layers += [nn.BatchNorm2d(out)] if spec.batchnorm else []
            layers.append(activation())
            layers += pool() if last and not spec.pool_after_conv else []
            prev = out
    if spec.head == "gap":
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        width = prev
    else:
        side = spec.stage_sizes()[-1]
        layers.append(nn.Flatten())
        width = prev * side * side
    for h in spec.hidden:
        layers += [nn.Dropout(spec.dropout)] if spec.dropout else []
        layers += [nn.Linear(width, h), activation()]
        width = h
    layers += [nn.Dropout(spec.dropout)] if spec.dropout else []
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
