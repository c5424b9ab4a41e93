"""Building the conv/pool stack and dense head from config values, with sizes computed rather than typed."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from catdog.errors import CatdogError

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU}
POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
HEADS = ("flatten", "gap")


class ScaleInput(nn.Module):
    """uint8 images in, normalised floats out, so checkpoints and exports take raw pixels."""

    def __init__(
        self, channels: int, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
    ):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean or [0.0] * channels).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std or [1.0] * channels).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std


def per_stage(value, n: int, key: str) -> list[int]:
    """An int for every stage, or one value per stage."""
    values = [value] * n if isinstance(value, int) else list(value)
    if len(values) != n:
        raise CatdogError(
            f"{key}={values}: give one value, or one per conv stage ({n}, the length of model.channels)."
        )
    return values


def stage_sizes(
    resolution: int, kernels: list[int], pool: int, padding: str, convs_per_stage: int
) -> list[int]:
    """Feature-map side after each stage (conv(s) then pooling)."""
    sizes, size = [], resolution
    for k in kernels:
        for _ in range(convs_per_stage):
            size = size if padding == "same" else size - k + 1
        size = size // pool if size > 0 else size
        sizes.append(size)
    return sizes


def min_resolution(kernels: list[int], pool: int, padding: str, convs_per_stage: int) -> int:
    return next(
        r for r in range(1, 4097) if min(stage_sizes(r, kernels, pool, padding, convs_per_stage)) >= 1
    )


def min_input_size(
    kernel: int | Sequence[int], channels: Sequence[int], pool: int, padding: str, convs_per_stage: int
) -> int:
    """The smallest image side the conv stack maps to a feature map of at least 1x1."""
    return min_resolution(per_stage(kernel, len(channels), "model.kernel"), pool, padding, convs_per_stage)


def build_convnet(
    in_channels: int,
    resolution: int,
    num_classes: int,
    channels: Sequence[int] = (32, 64, 128),
    kernel: int | Sequence[int] = 5,
    pool: int = 2,
    pool_type: str = "max",
    padding: str = "valid",
    convs_per_stage: int = 1,
    hidden: Sequence[int] = (512,),
    batchnorm: bool = False,
    dropout: float = 0.0,
    activation: str = "relu",
    head: str = "flatten",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> nn.Sequential:
    """conv stages -> (flatten | global average pool) -> dense layers -> logits."""
    if not channels or any(c < 1 for c in channels):
        raise CatdogError(
            f"model.channels={list(channels)}: need at least one conv stage, each with >= 1 channel."
        )
    kernels = per_stage(kernel, len(channels), "model.kernel")
    if any(k < 1 for k in kernels) or pool < 1 or convs_per_stage < 1:
        raise CatdogError(
            f"model.kernel={kernels}, model.pool={pool}, model.convs_per_stage: all must be >= 1."
        )
    for key, value, choices in (
        ("model.padding", padding, ("valid", "same")),
        ("model.pool_type", pool_type, tuple(POOLS)),
        ("model.activation", activation, tuple(ACTIVATIONS)),
        ("model.head", head, HEADS),
    ):
        if value not in choices:
            raise CatdogError(f"{key}={value}: must be one of {', '.join(choices)}.")
    if not 0 <= dropout < 1:
        raise CatdogError(f"model.dropout={dropout}: must be in [0, 1).")
    sizes = stage_sizes(resolution, kernels, pool, padding, convs_per_stage)
    if min(sizes) < 1:
        need = min_resolution(kernels, pool, padding, convs_per_stage)
        raise CatdogError(
            f"data.resolution={resolution} is too small for this conv stack (model.channels={list(channels)}, "
            f"model.kernel={kernels}, model.pool={pool}, model.padding={padding}): the feature map shrinks to "
            f"{max(min(sizes), 0)}x{max(min(sizes), 0)}. Use data.resolution>={need}, or fewer/smaller stages."
        )
    layers: list[nn.Module] = [ScaleInput(in_channels, mean, std)]
    prev = in_channels
    for out, k in zip(channels, kernels):
        for _ in range(convs_per_stage):
            layers.append(
                nn.Conv2d(prev, out, k, padding="same" if padding == "same" else 0, bias=not batchnorm)
            )
            if batchnorm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(ACTIVATIONS[activation]())
            prev = out
        if pool > 1:
            layers.append(POOLS[pool_type](pool))
    if head == "gap":
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        width = prev
    else:
        layers.append(nn.Flatten())
        width = prev * sizes[-1] * sizes[-1]
    for h in hidden:
        layers += [nn.Dropout(dropout)] if dropout else []
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        width = h
    layers += [nn.Dropout(dropout)] if dropout else []
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
