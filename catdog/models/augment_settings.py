"""model.augment as one value that checks itself: which augmentations a training batch gets, and how strongly.

No torch here, as in convnet_settings.py: the config check builds this spec before any photo is decoded, and the classifier
builds the same one, so each rule exists once. augment.py and policies.py apply it to batches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import partial

from catdog.errors import CatdogError, did_you_mean
from catdog.rules import check_all, invalid, is_int, is_number

KEY = "model.augment"


@dataclass(frozen=True)
class ResizedCrop:
    """A random crop of `scale` of the image's area with aspect `ratio`, enlarged back to the full side."""

    # 0.25 of the area down to the robustness report's strongest zoom (half the side); torchvision's 0.08 would
    # leave a few 64 px-image pixels of fur
    scale: tuple[float, float] = (0.25, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)


@dataclass(frozen=True)
class AugMix:
    """AugMix's mixing (Hendrycks et al. 2020): `width` chains of 1..`depth` random ops at `severity` (a fraction of
    the ops' largest magnitudes), blended with Dirichlet(alpha) weights and then with the image (Beta(alpha))."""

    width: int = 3
    depth: int = 3
    severity: float = 0.3  # the paper's severity 3 of 10
    alpha: float = 1.0


@dataclass(frozen=True)
class AugmentSettings:
    """Everything model.augment can ask for; a key left out keeps its default (hflip on, all else off)."""

    hflip: bool = True
    translate: int = 0  # px: reflect-padded shifts up to this far
    brightness: float = 0.0  # +- this fraction of full scale, added
    contrast: float = 0.0  # +- this fraction, around the image's mean
    resized_crop: ResizedCrop | None = None
    trivial_augment: float = 0.0  # strength: 1 = RandAugment's standard magnitudes, 0 = off
    augmix: AugMix | None = None
    mixup: float = 0.0  # Beta(alpha, alpha) of the mixing weight, 0 = off
    cutmix: float = 0.0  # Beta(alpha, alpha) of the kept area, 0 = off
    # the largest Gaussian blur, its sigma a fraction of the side (the robustness report's unit: its blur is 0.01,
    # 0.02 and 0.04), 0 = off: half the images, sigma uniform up to it
    blur: float = 0.0
    # the last N epochs keep only hflip and translate, everything else off: a fine-tune on near-clean photos after
    # strong augmentation (He et al. 2019, "Data augmentation revisited"; YOLOX's no_aug_epochs), 0 = never
    plain_last_epochs: int = 0

    def for_epoch(self, epoch: int, max_epochs: int) -> AugmentSettings:
        """What epoch `epoch` (from 0) of `max_epochs` trains with: this spec, or in the last plain_last_epochs its
        flips and shifts only."""
        if self.plain_last_epochs and epoch >= max_epochs - self.plain_last_epochs:
            return AugmentSettings(hflip=self.hflip, translate=self.translate)
        return self

    @property
    def mixes_labels(self) -> bool:
        return bool(self.mixup or self.cutmix)

    @property
    def needs_float(self) -> bool:
        """Whether anything that needs floats is asked for (flips, shifts, jitter and cutmix work on uint8)."""
        return bool(self.resized_crop or self.trivial_augment or self.blur or self.augmix or self.mixup)


KEYS = tuple(f.name for f in fields(AugmentSettings))
EXAMPLE = "{hflip: true, resized_crop: {scale: [0.25, 1]}, trivial_augment: 1, mixup: 0.2}"


def _fail(key: str, value, expected: str) -> CatdogError:
    return invalid(f"{KEY}.{key}", value, expected)


def _range(key: str, value, low: float, high: float) -> tuple[float, float]:
    """A [lo, hi] pair with low < lo <= hi <= high."""
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
    if not (ok and all(is_number(v) for v in value) and low < value[0] <= value[1] <= high):
        raise _fail(key, value, f"[lo, hi] with {low} < lo <= hi <= {high}")
    return float(value[0]), float(value[1])


def _nested(key: str, value, cls: type, checks: dict) -> object | None:
    """true (the defaults), false/null (off) or a mapping of some of `cls`'s fields, each passing its check."""
    if value is None or value is False:
        return None
    if value is True:
        return cls()
    names = [f.name for f in fields(cls)]
    if not isinstance(value, Mapping) or not value or set(value) - set(names):
        raise _fail(key, value, f"true or a mapping of {', '.join(names)}")
    return cls(**{k: checks[k](f"{key}.{k}", v) for k, v in value.items()})


def _number(low: float, high: float, integer: bool = False, open_low: bool = False):
    def check(key: str, value):
        kind = is_int(value) if integer else is_number(value)
        if not (kind and (low < value if open_low else low <= value) and value <= high):
            interval = f"{'(' if open_low else '['}{low}, {high}]"
            raise _fail(key, value, f"{'an integer' if integer else 'a number'} in {interval}")
        return value if integer else float(value)

    return check


def _flag(key: str, value) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, value, "true or false")
    return value


def _strength(key: str, value) -> float:
    """0..1, true = 1 (trivial_augment)."""
    return float(value) if isinstance(value, bool) else _number(0, 1)(key, value)


def _epochs(key: str, value) -> int:
    if not (is_int(value) and value >= 0):
        raise _fail(key, value, "a whole number of epochs >= 0 (0 = augment every epoch)")
    return value


def _translate(resolution: int) -> Callable[[str, object], int]:
    def check(key: str, value) -> int:
        if not (is_int(value) and 0 <= value < resolution):
            raise CatdogError(
                f"{KEY}.{key}={value}: shifts must be 0 <= translate < data.resolution ({resolution})."
            )
        return value

    return check


def value_checks(resolution: int) -> dict[str, Callable]:
    """Each model.augment key's check, which returns the value AugmentSettings holds (the images' side for shifts)."""
    return {
        "hflip": _flag,
        "translate": _translate(resolution),
        "brightness": _number(0, 1),
        "contrast": _number(0, 1),
        "resized_crop": partial(
            _nested,
            cls=ResizedCrop,
            checks={
                "scale": lambda k, v: _range(k, v, 0, 1),
                "ratio": lambda k, v: _range(k, v, 0, float("inf")),
            },
        ),
        "trivial_augment": _strength,
        "augmix": partial(
            _nested,
            cls=AugMix,
            checks={
                "width": _number(1, 8, integer=True),
                "depth": _number(1, 8, integer=True),
                "severity": _number(0, 1, open_low=True),
                "alpha": _number(0, 100, open_low=True),
            },
        ),
        "mixup": _number(0, 100),
        "cutmix": _number(0, 100),
        "blur": _number(0, 0.1),  # 0.1: +-3 sigma stays inside the image
        "plain_last_epochs": _epochs,
    }


def augment_settings(augment: Mapping | None, resolution: int) -> AugmentSettings | None:
    """The spec of model.augment (None: no augmentation); every wrong key or value is named in one CatdogError."""
    if augment is None or (isinstance(augment, Mapping) and not augment):
        return None
    if not isinstance(augment, Mapping):
        raise CatdogError(f"{KEY}={augment}: give a mapping of {', '.join(KEYS)}, e.g. {EXAMPLE}.")
    checks, values = value_checks(resolution), {}

    def check(key: str) -> None:
        if key not in checks:
            raise CatdogError(f"{KEY}.{key} is not an augmentation{did_you_mean(str(key), KEYS, KEY + '.')}.")
        values[key] = checks[key](key, augment[key])

    check_all(*(partial(check, k) for k in augment))
    return AugmentSettings(**values)
