"""The network's shape as one value that checks itself: the network keys of `model` (NET_KEYS) plus its input.

No torch here: the config check builds this spec before any data is prepared (and `catdog.prepare`, which imports
it, starts without torch), and `build_convnet` builds the layers from the same spec, so each rule exists once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from catdog.errors import CatdogError, did_you_mean
from catdog.rules import check_channels, check_resolution, invalid, is_int, is_int_list, is_number

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
    convs_per_stage: int = 1
    hidden: Sequence[int] = (512,)
    batchnorm: bool = False
    dropout: float = 0.0
    activation: str = "relu"
    head: str = "flatten"
    pool_after_conv: bool = False
    kernels: list[int] = field(init=False)

    def __post_init__(self) -> None:
        rules = (
            (
                "channels",
                is_int_list(self.channels) and len(self.channels) > 0 and min(self.channels) >= 1,
                "a list of positive integers, one conv stage each, e.g. [32,64,128]",
            ),
            (
                "kernel",
                (is_int(self.kernel) and self.kernel >= 1)
                or (is_int_list(self.kernel) and len(self.kernel) > 0 and min(self.kernel) >= 1),
                "a positive integer or one per conv stage, e.g. 5 or [5,3,3]",
            ),
            ("pool", is_int(self.pool) and self.pool >= 1, "a positive integer (1 = no pooling)"),
            ("pool_type", self.pool_type in POOL_TYPES, " or ".join(POOL_TYPES)),
            ("padding", self.padding in PADDINGS, " or ".join(PADDINGS)),
            (
                "convs_per_stage",
                is_int(self.convs_per_stage) and self.convs_per_stage >= 1,
                "a positive integer",
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
        for key, ok, expected in rules:
            if not ok:
                raise invalid(f"model.{key}", getattr(self, key), expected)
        check_resolution(self.resolution)
        check_channels(self.in_channels)
        kernels = (
            [self.kernel] * len(self.channels)
            if is_int(self.kernel)
            else list(cast(Sequence[int], self.kernel))
        )
        if len(kernels) != len(self.channels):
            raise CatdogError(
                f"model.kernel={kernels}: give one value, or one per conv stage "
                f"({len(self.channels)}, the length of model.channels)."
            )
        object.__setattr__(self, "kernels", kernels)
        sizes = self.stage_sizes()
        if min(sizes) < 1:
            need = self.min_resolution()
            raise CatdogError(
                f"data.resolution={self.resolution} is too small for this conv stack (model.channels="
                f"{list(self.channels)}, model.kernel={kernels}, model.pool={self.pool}, "
                f"model.padding={self.padding}): the feature map shrinks to {max(min(sizes), 0)}x"
                f"{max(min(sizes), 0)}. Use data.resolution>={need}, or fewer/smaller stages."
            )

    def min_resolution(self) -> int:
        """The smallest input side this conv stack maps to a feature map of at least 1x1."""
        return next(r for r in range(1, 4097) if min(self.stage_sizes(r)) >= 1)

    def stage_sizes(self, resolution: int | None = None) -> list[int]:
        """Feature-map side after each stage (conv(s) then pooling), for `resolution` or the spec's own."""
        sizes, size = [], resolution or self.resolution
        for k in self.kernels:
            for _ in range(self.convs_per_stage):
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
