"""The ConvNet's builder: the conv/pool stack and dense head, built from a ConvNetSettings, with sizes computed rather
than typed."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from catdog.models.convnet_settings import ACTIVATIONS, POOL_TYPES, ConvNetSettings
from catdog.models.network import Network, ScaleInput

ACTIVATION_LAYERS = dict(zip(ACTIVATIONS, (nn.ReLU, nn.GELU, nn.SiLU, nn.LeakyReLU), strict=True))
POOL_LAYERS = dict(zip(POOL_TYPES, (nn.MaxPool2d, nn.AvgPool2d), strict=True))


def build_convnet(
    spec: ConvNetSettings,
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Network:
    """conv stages -> (flatten | global average pool) -> dense layers -> logits; uint8 images in. Grad-CAM looks at
    the last conv's activation, before its pooling (with pool_after_conv, the conv's own output, which the pooling
    follows)."""
    activation = ACTIVATION_LAYERS[spec.activation]
    layers: list[nn.Module] = [ScaleInput(spec.in_channels, mean, std)]
    prev, stage_ends, explain = spec.in_channels, [], 0

    def pool() -> list[nn.Module]:
        return [POOL_LAYERS[spec.pool_type](spec.pool)] if spec.pool > 1 else []

    for out, k, convs in zip(spec.channels, spec.kernels, spec.convs, strict=True):
        for i in range(convs):
            padding = "same" if spec.padding == "same" else 0
            layers.append(nn.Conv2d(prev, out, k, padding=padding, bias=not spec.batchnorm))
            conv_at = len(layers) - 1
            last = i == convs - 1
            # pool_after_conv: batch norm and activation then run on a quarter of the pixels (pool 2), the
            # memory-bound passes that take ~40% of a fast step on a 2-core CPU (RESULTS.md, efficiency)
            layers += pool() if last and spec.pool_after_conv else []
            layers += [nn.BatchNorm2d(out)] if spec.batchnorm else []
            layers.append(activation())
            explain = conv_at if spec.pool_after_conv and spec.pool > 1 else len(layers) - 1
            layers += pool() if last and not spec.pool_after_conv else []
            prev = out
        stage_ends.append(len(layers) - 1)
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
    return Network(*layers, stage_ends=stage_ends, explain_layer=explain)
