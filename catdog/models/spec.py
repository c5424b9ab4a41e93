"""The network's shape as one value that checks itself: the network keys of `model` (NET_KEYS) plus its input.

No torch here: the config check builds this spec before any data is prepared (and `catdog.prepare`, which imports
it, starts without torch), and `build_convnet` builds the layers from the same spec, so each rule exists once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import cast

from catdog.errors import CatdogError, did_you_mean
from catdog.rules import (
    check_all,
    check_channels,
    check_resolution,
    field_rules,
    is_int,
    is_int_list,
    is_number,
)

ACTIVATIONS = ("relu", "gelu", "silu", "leaky_relu")
POOL_TYPES = ("max", "avg")
PADDINGS = ("valid", "same")
HEADS = ("flatten", "gap")
# the network's keys: model.channels, model.kernel, ... (ConvNetSpec's fields less the input's channels and
# resolution, which come from data.*); catdog 0.2 nested them under model.net, 0.1 and 0.3 keep them at model.*
NET_KEYS = (
    "channels",
    "kernel",
    "pool",
    "pool_type",
    "padding",
    "convs_per_stage",
    "hidden",
    "batchnorm",
    "dropout",
    "activation",
    "head",
    "pool_after_conv",
)


def positive_or_per_stage(value: object) -> bool:
    """A positive integer, or a non-empty list of them (one per conv stage: `ConvNetSpec.per_stage`)."""
    if is_int(value):
        return value >= 1
    return is_int_list(value) and len(value) > 0 and min(value) >= 1


@dataclass(frozen=True)
class ConvNetSpec:
    """Conv stages (conv(s) -> batch norm -> activation, then pooling) -> flatten or global average pooling ->
    dense layers -> logits. `in_channels` and `resolution` come from `data.*`, the rest from `model.*`.
    `pool_after_conv` moves each stage's pooling up to right after its last convolution, before that conv's batch
    norm and activation (airbench's order), so those two run on a quarter of the pixels at pool 2."""

    in_channels: int
    resolution: int
    channels: Sequence[int] = (32, 64, 128)
    kernel: int | Sequence[int] = 5
    pool: int = 2
    pool_type: str = "max"
    padding: str = "valid"
    convs_per_stage: int | Sequence[int] = 1
    hidden: Sequence[int] = (512,)
    batchnorm: bool = False
    dropout: float = 0.0
    activation: str = "relu"
    head: str = "flatten"
    pool_after_conv: bool = False
    kernels: list[int] = field(init=False)
    convs: list[int] = field(init=False)  # convolutions in each stage

    def __post_init__(self) -> None:
        rules = (
            (
                "channels",
                is_int_list(self.channels) and len(self.channels) > 0 and min(self.channels) >= 1,
                "a list of positive integers, one conv stage each, e.g. [32,64,128]",
            ),
            (
                "kernel",
                positive_or_per_stage(self.kernel),
                "a positive integer or one per conv stage, e.g. 5 or [5,3,3]",
            ),
            ("pool", is_int(self.pool) and self.pool >= 1, "a positive integer (1 = no pooling)"),
            ("pool_type", self.pool_type in POOL_TYPES, " or ".join(POOL_TYPES)),
            ("padding", self.padding in PADDINGS, " or ".join(PADDINGS)),
            (
                "convs_per_stage",
                positive_or_per_stage(self.convs_per_stage),
                "a positive integer or one per conv stage, e.g. 2 or [1,2,2,2]",
            ),
            (
                "hidden",
                is_int_list(self.hidden) and all(i >= 1 for i in self.hidden),
                "a list of dense-layer widths, e.g. [512] or []",
            ),
            ("batchnorm", isinstance(self.batchnorm, bool), "true or false"),
            ("dropout", is_number(self.dropout) and 0 <= self.dropout < 1, "a probability in [0, 1)"),
            ("activation", self.activation in ACTIVATIONS, " or ".join(ACTIVATIONS)),
            ("head", self.head in HEADS, "flatten or gap (global average pooling)"),
            ("pool_after_conv", isinstance(self.pool_after_conv, bool), "true or false"),
        )
        check_all(
            *field_rules(self, "model.", rules),
            partial(check_resolution, self.resolution),
            partial(check_channels, self.in_channels),
        )
        object.__setattr__(self, "kernels", self.per_stage("kernel"))
        object.__setattr__(self, "convs", self.per_stage("convs_per_stage"))
        sizes = self.stage_sizes()
        if min(sizes) < 1:
            need = self.min_resolution()
            raise CatdogError(
                f"data.resolution={self.resolution} is too small for this conv stack (model.channels="
                f"{list(self.channels)}, model.kernel={self.kernels}, model.pool={self.pool}, "
                f"model.padding={self.padding}, model.convs_per_stage={self.convs}): the feature map shrinks to "
                f"{max(min(sizes), 0)}x{max(min(sizes), 0)}. Use data.resolution>={need}, or fewer/smaller stages."
            )

    def per_stage(self, key: str) -> list[int]:
        """`model.<key>` as one value per conv stage: a single value repeated, or the list, checked for length."""
        value = getattr(self, key)
        values = [value] * len(self.channels) if is_int(value) else list(cast(Sequence[int], value))
        if len(values) != len(self.channels):
            raise CatdogError(
                f"model.{key}={values}: give one value, or one per conv stage "
                f"({len(self.channels)}, the length of model.channels)."
            )
        return values

    def min_resolution(self) -> int:
        """The smallest input side this conv stack maps to a feature map of at least 1x1."""
        return next(r for r in range(1, 4097) if min(self.stage_sizes(r)) >= 1)

    def stage_sizes(self, resolution: int | None = None) -> list[int]:
        """Feature-map side after each stage (conv(s) then pooling), for `resolution` or the spec's own."""
        sizes, size = [], resolution or self.resolution
        for k, convs in zip(self.kernels, self.convs, strict=True):
            for _ in range(convs):
                size = size if self.padding == "same" else size - k + 1
            size = size // self.pool if size > 0 else size
            sizes.append(size)
        return sizes


def convnet_spec(net: Mapping | None, in_channels: int, resolution: int) -> ConvNetSpec:
    """The spec of the network keys in `net`; one message for a key that is not one of them."""
    net = dict(net or {})
    unknown = sorted(set(net) - set(NET_KEYS))
    if unknown:
        raise CatdogError(
            f"model.{unknown[0]} is not a network setting{did_you_mean(unknown[0], NET_KEYS, 'model.')}"
        )
    return ConvNetSpec(in_channels=in_channels, resolution=resolution, **net)
