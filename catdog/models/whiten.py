"""A whitened, frozen first convolution, as in airbench's CIFAR-10 speed records (`model.whiten=true`).

The first conv's filters are the principal components of the training images' k x k patches (k its kernel),
each scaled by 1/sqrt(eigenvalue + eps) and used with both signs: with channels[0] = 2m filters, the m strongest
components. Its outputs on the training patches are then decorrelated with unit second moment, and the layer stays
fixed while the rest trains. The filters are stored in the checkpoint like any weight.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

EPS = 5e-4  # airbench's: keeps the weakest components' gain bounded


def first_conv(net: nn.Sequential) -> nn.Conv2d:
    return next(m for m in net if isinstance(m, nn.Conv2d))


def freeze_first_conv(net: nn.Sequential) -> None:
    """Keep the first conv's filters out of training, whatever set them (init_whitening, or a checkpoint)."""
    first_conv(net).weight.requires_grad_(False)


@torch.no_grad()
def patch_second_moments(scale: nn.Module, images: np.ndarray, kernel: int, chunk: int = 64) -> torch.Tensor:
    """E[p p^T] over every k x k patch (no padding) of the scaled N,H,W,C uint8 images, in chunks (patches of a few
    thousand images would take gigabytes at once)."""
    total: torch.Tensor | None = None
    count = 0
    for start in range(0, len(images), chunk):
        x = scale(torch.from_numpy(np.ascontiguousarray(images[start : start + chunk])).permute(0, 3, 1, 2))
        patches = x.unfold(2, kernel, 1).unfold(3, kernel, 1)  # N, C, H', W', k, k
        flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, x.shape[1] * kernel * kernel).double()
        total = flat.T @ flat if total is None else total + flat.T @ flat
        count += len(flat)
    assert total is not None, "images holds at least one image"
    return total / count


@torch.no_grad()
def init_whitening(net: nn.Sequential, images: np.ndarray, eps: float = EPS) -> None:
    """Set the first conv's filters from `images`, a sample of the training split (N,H,W,C uint8)."""
    conv = first_conv(net)
    k = conv.kernel_size[0]
    eigenvalues, eigenvectors = torch.linalg.eigh(patch_second_moments(net[0], images, k))
    m = conv.out_channels // 2
    strongest = eigenvectors[:, -m:].flip(1).T / torch.sqrt(eigenvalues[-m:].flip(0) + eps).unsqueeze(1)
    filters = strongest.reshape(m, conv.in_channels, k, k).to(conv.weight.dtype)
    conv.weight.copy_(torch.cat([filters, -filters]))
