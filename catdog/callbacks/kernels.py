"""The first conv layer's kernels as an image grid: what the network looks for in the pixels."""

from __future__ import annotations

from torch import nn

from catdog.callbacks.periodic import PeriodicImages
from catdog.visualize import kernel_grid


class ConvKernels(PeriodicImages):
    """Logs `model/conv1_kernels`; the step slider shows them turn from noise into edge/stripe detectors."""

    def draw(self, writer, trainer, pl_module, step: int) -> None:
        conv = next((m for m in pl_module.modules() if isinstance(m, nn.Conv2d)), None)
        if conv is not None:
            writer.add_image("model/conv1_kernels", kernel_grid(conv.weight), step)
