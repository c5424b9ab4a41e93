"""Progressive resizing (FFCV's ImageNet recipe): the first epochs train on smaller images, the last ones at the
target resolution, by resizing each training batch on its device; one cache at data.resolution serves them all.

`model.progressive_resize={start: 48, until_epoch: 6}` with data.resolution=64: epoch e < 6 trains at
48 + (64 - 48) * e / 6 rounded to a multiple of `multiple` (8) above start, i.e. 48, 48, 56, 56, 56, 64 px; epoch 6 on
at 64 px. Validation always sees data.resolution. Only a global-average-pooling head (`model.head=gap`) accepts
any input size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from catdog.errors import CatdogError

KEYS = ("start", "until_epoch", "multiple")


def check_progressive_resize(
    schedule: Mapping | None, resolution: int, head: str, min_resolution: int
) -> None:
    """One message naming the key for a schedule that cannot work with this net and data.resolution."""
    if schedule is None:
        return
    if (
        not isinstance(schedule, Mapping)
        or set(schedule) - set(KEYS)
        or not {"start", "until_epoch"} <= set(schedule)
    ):
        raise CatdogError(
            f"model.progressive_resize={schedule}: give start and until_epoch (and optionally multiple), "
            "e.g. {start:48,until_epoch:6}."
        )
    if head != "gap":
        raise CatdogError(
            f"model.progressive_resize needs model.head=gap: a {head} head fixes the input size to "
            f"data.resolution={resolution}. Set model.head=gap, or drop model.progressive_resize."
        )
    start, until, multiple = schedule["start"], schedule["until_epoch"], schedule.get("multiple", 8)
    if not (isinstance(start, int) and min_resolution <= start <= resolution):
        raise CatdogError(
            f"model.progressive_resize.start={start}: must be a size in pixels from {min_resolution} (the smallest "
            f"input this conv stack takes) to data.resolution={resolution}."
        )
    if not (isinstance(until, int) and until >= 1 and isinstance(multiple, int) and multiple >= 1):
        raise CatdogError(
            f"model.progressive_resize.until_epoch={until}, multiple={multiple}: both must be integers >= 1."
        )


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
