"""The model's rules beside the network's shape: its loss, augmentation, progressive resizing and whitening, as
one value that checks itself (ModelSettings), against the network they train (the settings of model.arch's kind:
models/arch.py).

No torch here, as in spec.py: the config check (catdog.run.checks) builds this spec before any photo is decoded,
and the classifier builds the same one from its arguments, so each rule exists once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import partial

from catdog.errors import CatdogError
from catdog.models.arch import NetworkSettings, network_settings
from catdog.models.augment_settings import AugmentSettings, augment_settings
from catdog.rules import check_all, check_choice, is_int, is_number, pick, require

LOSSES = ("cross_entropy", "mse")
PROGRESSIVE_KEYS = ("start", "until_epoch", "multiple")


@dataclass(frozen=True)
class ModelSettings:
    """What `model.*` asks of training besides the network: `net` is the network's spec; the other fields are the
    config's values as given, and `augmentation` is model.augment checked (None: no augmentation)."""

    net: NetworkSettings
    loss: str = "cross_entropy"  # mse: softmax + MSE on one-hot labels (the tutorial)
    label_smoothing: float = 0.0
    augment: Mapping | None = None
    progressive_resize: Mapping | None = None
    whiten: bool = False
    freeze: int = 0  # conv stages kept fixed from the start (models/freeze.py)
    augmentation: AugmentSettings | None = field(init=False)

    def __post_init__(self) -> None:
        check_all(
            partial(check_loss, self.loss, self.label_smoothing),
            lambda: object.__setattr__(
                self, "augmentation", augment_settings(self.augment, self.net.resolution)
            ),
            partial(check_progressive_resize, self.progressive_resize, self.net),
            partial(check_whiten, self.whiten, self.net),
            partial(check_freeze, self.freeze, self.net),
        )

    @classmethod
    def from_config(cls, model: Mapping) -> ModelSettings:
        """The spec of a `model` config (plain values): model.arch's kind's keys on its input (in_channels,
        resolution: data.*'s) and the training rules' keys (MODEL_KEYS); its other keys (optimizer, tta, speed
        settings) are not its to check."""
        others = (*MODEL_KEYS, *CLASSIFIER_KEYS)  # `+model.kernl=3` is none of them, nor the kind's
        parts: dict = {}
        check_all(
            lambda: parts.update(
                net=network_settings(model, model["in_channels"], model["resolution"], others)
            ),
            # the rules that need no network, so that a wrong network setting does not hide them
            lambda: check_loss(
                model.get("loss", cls.loss), model.get("label_smoothing", cls.label_smoothing)
            ),
            # model.augment.translate is checked against the side, where data.resolution is a valid one
            lambda: (
                is_int(model["resolution"]) and augment_settings(model.get("augment"), model["resolution"])
            ),
        )
        return cls(parts["net"], **pick(model, MODEL_KEYS))


def check_loss(loss: str, label_smoothing: float) -> None:
    """model.loss is one of LOSSES, model.label_smoothing in [0, 1)."""
    ok = is_number(label_smoothing) and 0 <= label_smoothing < 1
    check_all(
        partial(check_choice, "model.loss", loss, LOSSES),
        partial(require, ok, "model.label_smoothing", label_smoothing, "a number in [0, 1)"),
    )


# the keys of `model` a ModelSettings takes besides the network's (its kind's settings fields)
MODEL_KEYS = tuple(f.name for f in fields(ModelSettings) if f.init and f.name != "net")
# the other keys of `model`: the classifier's other arguments (tests/test_model.py holds them to its signature) and
# Hydra's _target_
CLASSIFIER_KEYS = (
    "_target_",
    "arch",
    "in_channels",
    "resolution",
    "classes",
    "normalize",
    "mean",
    "std",
    "fast_decode",
    "resize",
    "class_weights",
    "tta",
    "channels_last",
    "compile",
    "optimizer",
    "scheduler",
)


def check_progressive_resize(schedule: Mapping | None, spec: NetworkSettings) -> None:
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
    need = spec.any_size_needs()
    if need:
        raise CatdogError(
            f"model.progressive_resize needs {need}: this network takes only data.resolution={spec.resolution}. "
            f"Set {need}, or drop model.progressive_resize."
        )
    start, until, multiple = schedule["start"], schedule["until_epoch"], schedule.get("multiple", 8)
    smallest = spec.min_resolution()
    if not (is_int(start) and smallest <= start <= spec.resolution):
        raise CatdogError(
            f"model.progressive_resize.start={start}: must be a size in pixels from {smallest} (the smallest input "
            f"this network takes) to data.resolution={spec.resolution}."
        )
    if not (is_int(until) and until >= 1 and is_int(multiple) and multiple >= 1):
        raise CatdogError(
            f"model.progressive_resize.until_epoch={until}, multiple={multiple}: both must be integers >= 1."
        )


def check_freeze(freeze: int, spec: NetworkSettings) -> None:
    """model.freeze counts the network's stages: from 0 (none) to all of them."""
    stages = len(spec.feature_sides(spec.resolution))
    require(
        is_int(freeze) and 0 <= freeze <= stages,
        "model.freeze",
        freeze,
        f"a number of the network's stages to keep fixed, from 0 to {stages}",
    )


def check_whiten(whiten: bool, spec: NetworkSettings) -> None:
    """model.whiten uses both signs of whole principal components of the first conv's input patches: its filters
    must be even and at most 2 x channels x kernel^2 (a kind without such a conv says so)."""
    require(isinstance(whiten, bool), "model.whiten", whiten, "true or false")
    if not whiten:
        return
    out, k = spec.whitened_conv()
    dims = spec.in_channels * k * k
    if out % 2 or out > 2 * dims:
        raise CatdogError(
            f"model.whiten=true: model.channels[0]={out} must be even and at most {2 * dims} (both signs of the "
            f"{dims} components of the {k}x{k}x{spec.in_channels} input patches). Change model.channels[0] "
            "or drop model.whiten."
        )
