"""The residual network's settings (`model=resnet`, or `model.arch=resnet`): a stem convolution, then stages of
basic blocks (two convolutions and a shortcut, He et al. 2016), global average pooling and one linear layer.

No torch here, as in spec.py: the config check builds these settings; catdog/models/resnet.py builds the layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from catdog.errors import CatdogError
from catdog.models.arch import NetworkSettings
from catdog.models.convnet_settings import ACTIVATIONS, positive_or_per_stage, stage_values
from catdog.rules import check_all, field_rules, is_int, is_int_list, is_number

DOWNSAMPLES = ("stride", "pool")


@dataclass(frozen=True)
class ResNetSettings(NetworkSettings):
    """Stem conv (channels[0] filters) -> per stage: its first block shrinks the map by `stride` (a strided first
    conv with a pooled 1x1 projection shortcut, or max pooling before the block with downsample=pool) and widens it to
    the stage's channels, then `blocks` - 1 more blocks -> global average pooling -> dropout -> logits."""

    builder: ClassVar[str] = "catdog.models.resnet.build_resnet"
    channels: Sequence[int] = (32, 64, 128)  # one stage each
    blocks: int | Sequence[int] = 1  # basic blocks per stage
    kernel: int = 3
    stride: int | Sequence[int] = (1, 2, 2)  # how much each stage shrinks the map
    downsample: str = "stride"  # stride | pool
    batchnorm: bool = True
    activation: str = "relu"
    dropout: float = 0.0
    blocks_per_stage: list[int] = field(init=False)
    strides: list[int] = field(init=False)

    def __post_init__(self) -> None:
        rules = (
            (
                "channels",
                is_int_list(self.channels) and len(self.channels) > 0 and min(self.channels) >= 1,
                "a list of positive integers, one stage each, e.g. [32,64,128]",
            ),
            (
                "blocks",
                positive_or_per_stage(self.blocks),
                "a positive integer or one per stage, e.g. [2,2,2]",
            ),
            # odd: "same" padding of a strided conv is then symmetric and the map shrinks by exactly the stride
            ("kernel", is_int(self.kernel) and self.kernel % 2 == 1, "an odd positive integer, e.g. 3"),
            (
                "stride",
                positive_or_per_stage(self.stride),
                "a positive integer or one per stage, e.g. [1,2,2]",
            ),
            ("downsample", self.downsample in DOWNSAMPLES, " or ".join(DOWNSAMPLES)),
            ("batchnorm", isinstance(self.batchnorm, bool), "true or false"),
            ("activation", self.activation in ACTIVATIONS, " or ".join(ACTIVATIONS)),
            ("dropout", is_number(self.dropout) and 0 <= self.dropout < 1, "a probability in [0, 1)"),
        )
        check_all(*field_rules(self, "model.", rules), *self.input_checks())
        object.__setattr__(self, "blocks_per_stage", stage_values(self, "blocks"))
        object.__setattr__(self, "strides", stage_values(self, "stride"))
        if min(self.feature_sides(self.resolution)) < 1:
            raise CatdogError(
                f"data.resolution={self.resolution} is too small for model.stride={self.strides} "
                f"with model.downsample=pool. Use data.resolution>={self.min_resolution()}, or smaller strides."
            )

    def feature_sides(self, resolution: int) -> list[int]:
        sides, side = [], resolution
        for s in self.strides:
            # a strided conv with "same" padding rounds up; pooling rounds down
            side = -(-side // s) if self.downsample == "stride" else side // s
            sides.append(side)
        return sides

    def whitened_conv(self) -> tuple[int, int]:
        return self.channels[0], self.kernel
