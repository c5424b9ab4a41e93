"""Feature maps of each conv stage for one fixed validation image: what each stage responds to."""

from __future__ import annotations

import torch
from torch import nn

from catdog.callbacks.periodic import PeriodicImages, first_val_loader
from catdog.visualize import feature_grid, tile

STAGE_END = (nn.Conv2d, nn.Flatten, nn.AdaptiveAvgPool2d)


def stage_outputs(net: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """The activations entering each conv after the first, and the head: one per conv (after its pooling)."""
    outputs, seen_conv = [], False
    for layer in net:
        if isinstance(layer, STAGE_END) and seen_conv:
            outputs.append(x)
        seen_conv = seen_conv or isinstance(layer, nn.Conv2d)
        x = layer(x)
    return outputs


class FeatureMaps(PeriodicImages):
    """Logs `features/input`, `features/stage<i>` of the first validation image, every N epochs and at end."""

    def __init__(self, every_n_epochs: int = 5):
        super().__init__(every_n_epochs)
        self.image: torch.Tensor | None = None

    def draw(self, writer, trainer, pl_module, step: int) -> None:
        if self.image is None:
            loader = first_val_loader(trainer)
            if loader is None:
                return
            self.image = next(iter(loader))[0][:1].cpu()
            writer.add_image("features/input", tile(self.image.float() / 255), step)
        x = self.image.to(pl_module.device)
        for i, features in enumerate(stage_outputs(pl_module.net, x), start=1):
            writer.add_image(f"features/stage{i}", feature_grid(features[0]), step)
