"""Checks of the training options that depend on the network (model.progressive_resize, model.whiten).

No torch here, as in spec.py: the config check runs them on the ConvNetSpec before any data is prepared, and the
classifier runs the same ones when it is built.
"""

from __future__ import annotations

from collections.abc import Mapping

from catdog.errors import CatdogError
from catdog.models.spec import ConvNetSpec, is_int

PROGRESSIVE_KEYS = ("start", "until_epoch", "multiple")


def check_progressive_resize(schedule: Mapping | None, spec: ConvNetSpec) -> None:
    """A schedule of start (px), until_epoch and multiple that this net can train with."""
    if schedule is None:
        return
    if (
        not isinstance(schedule, Mapping)
        or set(schedule) - set(PROGRESSIVE_KEYS)
        or not {"start", "until_epoch"} <= set(schedule)
    ):
        raise CatdogError(
            f"model.progressive_resize={schedule}: give start and until_epoch (and optionally multiple), "
            "e.g. {start:48,until_epoch:6}."
        )
    if spec.head != "gap":
        raise CatdogError(
            f"model.progressive_resize needs model.head=gap: a {spec.head} head fixes the input size to "
            f"data.resolution={spec.resolution}. Set model.head=gap, or drop model.progressive_resize."
        )
    start, until, multiple = schedule["start"], schedule["until_epoch"], schedule.get("multiple", 8)
    smallest = spec.min_resolution()
    if not (is_int(start) and smallest <= start <= spec.resolution):
        raise CatdogError(
            f"model.progressive_resize.start={start}: must be a size in pixels from {smallest} (the smallest input "
            f"this conv stack takes) to data.resolution={spec.resolution}."
        )
    if not (is_int(until) and until >= 1 and is_int(multiple) and multiple >= 1):
        raise CatdogError(
            f"model.progressive_resize.until_epoch={until}, multiple={multiple}: both must be integers >= 1."
        )


def check_whiten(whiten: bool, spec: ConvNetSpec) -> None:
    """model.whiten uses both signs of whole principal components of the first conv's input patches: the first
    stage's channels must be even and at most 2 x channels x kernel^2."""
    if not whiten:
        return
    out, k = spec.channels[0], spec.kernels[0]
    dims = spec.in_channels * k * k
    if out % 2 or out > 2 * dims:
        raise CatdogError(
            f"model.whiten=true: model.channels[0]={out} must be even and at most {2 * dims} (both signs of the "
            f"{dims} components of the {k}x{k}x{spec.in_channels} input patches). Change model.channels[0] "
            "or drop model.whiten."
        )
