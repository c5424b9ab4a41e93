"""Progressive resizing (FFCV's ImageNet recipe): the first epochs train on smaller images, the last ones at the
target resolution, by resizing each training batch on its device; one cache at data.resolution serves them all.

`model.progressive_resize={start: 48, until_epoch: 6}` with data.resolution=64: epoch e < 6 trains at
48 + (64 - 48) * e / 6 rounded to a multiple of `multiple` (8) above start, i.e. 48, 48, 56, 56, 56, 64 px; epoch 6 on
at 64 px. Validation always sees data.resolution. Only a global-average-pooling head (`model.head=gap`)
accepts any input size (models/settings.py checks the schedule).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def resolution_at(epoch: int, resolution: int, start: int, until_epoch: int, multiple: int = 8) -> int:
    """The training resolution of `epoch` (0-based): from start, in steps of `multiple`, up to `resolution`."""
    if epoch >= until_epoch:
        return resolution
    grown = (resolution - start) * epoch / until_epoch
    return min(resolution, start + multiple * math.floor(grown / multiple + 0.5))


def resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) images to size x size with antialiased bilinear filtering (float out, same 0-255 scale); the
    batch itself when it already has that size."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
