"""Feature maps of each stage of the network for one fixed validation image: what each stage responds to."""

from __future__ import annotations

import torch

from catdog.callbacks.periodic import PeriodicImages, first_val_loader
from catdog.models.network import Network
from catdog.visualize import feature_grid, tile


def stage_outputs(net: Network, x: torch.Tensor) -> list[torch.Tensor]:
    """Each stage's output (its feature map, after its pooling), in order; the head is not run."""
    outputs = []
    for i, layer in enumerate(list(net)[: net.stage_ends[-1] + 1]):
        x = layer(x)
        if i in net.stage_ends:
            outputs.append(x)
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
