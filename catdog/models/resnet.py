"""The residual network's builder: basic blocks in stages, from a ResNetSettings (catdog/models/resnet_settings.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from catdog.models.convnet import ACTIVATION_LAYERS
from catdog.models.network import Network, ScaleInput
from catdog.models.resnet_settings import ResNetSettings


def conv_norm(inputs: int, outputs: int, kernel: int, stride: int, batchnorm: bool) -> list[nn.Module]:
    """A conv ("same" padding: the map shrinks by exactly the stride, for odd kernels) and its batch norm."""
    conv = nn.Conv2d(inputs, outputs, kernel, stride, padding=kernel // 2, bias=not batchnorm)
    return [conv, nn.BatchNorm2d(outputs)] if batchnorm else [conv]


class BasicBlock(nn.Module):
    """activation(conv -> norm -> activation -> conv -> norm + shortcut): the shortcut is the input itself, or
    where the block changes the width or the side, average pooling by the stride then a 1x1 conv (and norm): the
    ResNet-D shortcut (He et al. 2019), which sees every pixel. A strided 1x1 conv would also skip 3 in 4 pixels,
    and its backward pass in channels_last corrupts the heap on torch 2.13's CPU build (batch 2: "double free")."""

    def __init__(
        self,
        inputs: int,
        outputs: int,
        spec: ResNetSettings,
        stride: int,
        activation: Callable[[], nn.Module],
    ):
        super().__init__()
        self.body = nn.Sequential(
            *conv_norm(inputs, outputs, spec.kernel, stride, spec.batchnorm),
            activation(),
            *conv_norm(outputs, outputs, spec.kernel, 1, spec.batchnorm),
        )
        # ceil_mode: the side rounds up as the strided conv's does
        pool = [nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False)] if stride > 1 else []
        changed = inputs != outputs or stride > 1
        self.shortcut = (
            nn.Sequential(*pool, *conv_norm(inputs, outputs, 1, 1, spec.batchnorm))
            if changed
            else nn.Identity()
        )
        self.activation = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.body(x) + self.shortcut(x))


def build_resnet(
    spec: ResNetSettings,
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Network:
    """stem conv -> stages of basic blocks -> global average pool -> (dropout) -> logits; uint8 images in.
    Grad-CAM looks at the last stage's output."""
    activation = ACTIVATION_LAYERS[spec.activation]
    stem = conv_norm(spec.in_channels, spec.channels[0], spec.kernel, 1, spec.batchnorm)
    layers: list[nn.Module] = [ScaleInput(spec.in_channels, mean, std), *stem, activation()]
    prev = spec.channels[0]
    for out, blocks, stride in zip(spec.channels, spec.blocks_per_stage, spec.strides, strict=True):
        pool = spec.downsample == "pool" and stride > 1
        stage: list[nn.Module] = [nn.MaxPool2d(stride)] if pool else []
        for i in range(blocks):
            stage.append(BasicBlock(prev, out, spec, 1 if pool or i else stride, activation))
            prev = out
        layers.append(nn.Sequential(*stage))
    stage_ends = list(range(len(layers) - len(spec.channels), len(layers)))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    layers += [nn.Dropout(spec.dropout)] if spec.dropout else []
    layers.append(nn.Linear(prev, num_classes))
    return Network(*layers, stage_ends=stage_ends)
