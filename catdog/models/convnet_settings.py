"""The ConvNet's settings (`model.arch=convnet`, the default) as one value that checks itself: its fields are its
keys of `model`, plus its input.

No torch here: the config check builds this spec before any data is prepared (and `catdog.prepare`, which imports
it, starts without torch), and `build_convnet` builds the layers from the same spec, so each rule exists once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from catdog.errors import CatdogError
from catdog.models.arch import NetworkSettings
from catdog.rules import check_all, field_rules, is_int, is_int_list, is_number

ACTIVATIONS = ("relu", "gelu", "silu", "leaky_relu")
POOL_TYPES = ("max", "avg")
PADDINGS = ("valid", "same")
HEADS = ("flatten", "gap")


def positive_or_per_stage(value: object) -> bool:
    """A positive integer, or a non-empty list of them (one per stage: `stage_values`)."""
    if is_int(value):
        return value >= 1
    return is_int_list(value) and len(value) > 0 and min(value) >= 1


def stage_values(settings: Any, key: str) -> list[int]:
    """`model.<key>` of `settings` as one value per stage (settings.channels has one entry a stage): a single
    value repeated, or the list, checked for length."""
    value, stages = getattr(settings, key), len(settings.channels)
    values = [value] * stages if is_int(value) else list(cast(Sequence[int], value))
    if len(values) != stages:
        raise CatdogError(
            f"model.{key}={values}: give one value, or one per stage ({stages}, the length of model.channels)."
        )
    return values


@dataclass(frozen=True)
class ConvNetSettings(NetworkSettings):
    """Conv stages (conv(s) -> batch norm -> activation, then pooling) -> flatten or global average pooling ->
    dense layers -> logits. `in_channels` and `resolution` come from `data.*`, the rest from `model.*`.
    `pool_after_conv` moves each stage's pooling up to right after its last convolution, before that conv's batch
    norm and activation (airbench's order), so those two run on a quarter of the pixels at pool 2."""

    builder: ClassVar[str] = "catdog.models.convnet.build_convnet"
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
            *self.input_checks(),
        )
        object.__setattr__(self, "kernels", stage_values(self, "kernel"))
        object.__setattr__(self, "convs", stage_values(self, "convs_per_stage"))
        sizes = self.stage_sizes()
        if min(sizes) < 1:
            need = self.min_resolution()
            raise CatdogError(
                f"data.resolution={self.resolution} is too small for this conv stack (model.channels="
                f"{list(self.channels)}, model.kernel={self.kernels}, model.pool={self.pool}, "
                f"model.padding={self.padding}, model.convs_per_stage={self.convs}): the feature map shrinks to "
                f"{max(min(sizes), 0)}x{max(min(sizes), 0)}. Use data.resolution>={need}, or fewer/smaller stages."
            )

    def stage_sizes(self, resolution: int | None = None) -> list[int]:
        """Feature-map side after each stage (conv(s) then pooling), for `resolution` or the spec's own."""
        sizes, size = [], resolution or self.resolution
        for k, convs in zip(self.kernels, self.convs, strict=True):
            for _ in range(convs):
                size = size if self.padding == "same" else size - k + 1
            size = size // self.pool if size > 0 else size
            sizes.append(size)
        return sizes

    def feature_sides(self, resolution: int) -> list[int]:
        return self.stage_sizes(resolution)

    def any_size_needs(self) -> str | None:
        return None if self.head == "gap" else "model.head=gap"  # a flatten head's width follows the side

    def whitened_conv(self) -> tuple[int, int]:
        return self.channels[0], self.kernels[0]
