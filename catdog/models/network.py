"""What every kind's builder returns (catdog/models/arch.py): a Network, an nn.Sequential that takes uint8 images
(ScaleInput first), ends in the classifier's nn.Linear (the audit reads its input as the image's features) and
knows where its stages end, for Grad-CAM, the feature-map callback and freezing the first stages."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


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


class Network(nn.Sequential):
    """`stage_ends`: the index of each stage's last module, whose output is the stage's feature map;
    `explain_layer`: the module whose output Grad-CAM looks at by default (the last stage's end unless given).
    A slice of a Network (net[a:b]) is a Network with neither."""

    def __init__(self, *layers: nn.Module, stage_ends: Sequence[int] = (), explain_layer: int | None = None):
        super().__init__(*layers)
        self.stage_ends = list(stage_ends)
        self.explain_layer = explain_layer if explain_layer is not None else (self.stage_ends or [-1])[-1]

    def feature_layers(self) -> list[int]:
        """Indices of the modules whose output is a feature map (N, C, h, w): all from the input's scaling to the
        last stage's end."""
        return list(range(1, self.stage_ends[-1] + 1)) if self.stage_ends else []

    def stages(self) -> list[nn.Sequential]:
        """The stages in order, each the modules after the previous stage's end up to its own (the first from the
        input's scaling on): `for stage in net.stages()[:n]: stage.requires_grad_(False)` freezes the first n."""
        starts = [1, *(end + 1 for end in self.stage_ends[:-1])]
        layers = list(self)
        return [
            nn.Sequential(*layers[start : end + 1])
            for start, end in zip(starts, self.stage_ends, strict=True)
        ]
