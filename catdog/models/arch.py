"""`model.arch`: the table of network kinds. A kind is a settings dataclass (its fields are the kind's keys of
`model`) that names its builder by import path and answers what the rest of catdog asks of a network.

No torch here: the config check picks and checks a kind's settings before any photo is decoded; only
`build_network` imports the builder's module (docs/add-a-network.md walks a new kind).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from difflib import get_close_matches
from functools import partial
from typing import Any, ClassVar

from catdog.errors import CatdogError, did_you_mean
from catdog.rules import check_channels, check_resolution

DEFAULT = "convnet"
# name -> the settings class's import path; a kind outside the package joins with `register`, or its settings
# class is named by import path in model.arch itself
KINDS: dict[str, str] = {
    "convnet": "catdog.models.convnet_settings.ConvNetSettings",
    "resnet": "catdog.models.resnet_settings.ResNetSettings",
}
INPUT_KEYS = ("in_channels", "resolution")  # from data.*, not model.*


@dataclass(frozen=True)
class NetworkSettings:
    """What every kind shares: its input (data.channels, data.resolution) and its answers to the rest of catdog.
    A subclass adds its keys as fields with their defaults, sets `builder` and checks itself in __post_init__
    (`input_checks` gives the input's two rules)."""

    in_channels: int
    resolution: int
    # "module.function": (settings, num_classes, mean, std) -> catdog.models.network.Network
    builder: ClassVar[str]

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The kind's keys of `model`: its fields less the input's."""
        return tuple(f.name for f in fields(cls) if f.init and f.name not in INPUT_KEYS)

    def input_checks(self) -> tuple:
        """check_all's rules of the input: data.resolution and data.channels."""
        return partial(check_resolution, self.resolution), partial(check_channels, self.in_channels)

    def feature_sides(self, resolution: int) -> list[int]:
        """The feature map's side after each stage for an input of `resolution` (< 1: the stack cannot take it)."""
        return [resolution]

    def min_resolution(self) -> int:
        """The smallest input side this network maps to a feature map of at least 1x1."""
        return next(r for r in range(1, 4097) if min(self.feature_sides(r)) >= 1)

    def any_size_needs(self) -> str | None:
        """None when the network takes any input side from min_resolution on (as model.progressive_resize needs),
        else the setting that would make it, e.g. "model.head=gap"."""
        return None

    def whitened_conv(self) -> tuple[int, int]:
        """(filters, kernel) of the first convolution, which model.whiten sets from the input's patches."""
        raise CatdogError(
            f"model.whiten=true does not apply to model.arch={arch_name(type(self))}: it has no plain first "
            "convolution on the input. Drop model.whiten."
        )


def register(name: str, settings: type[NetworkSettings]) -> None:
    """Add a kind to the table (e.g. from a project's own module): `model.arch=<name>` then picks it."""
    KINDS[name] = f"{settings.__module__}.{settings.__qualname__}"


def arch_name(settings: type[NetworkSettings]) -> str:
    """The table's name of a settings class, or its import path when it is not in the table."""
    path = f"{settings.__module__}.{settings.__qualname__}"
    return next((name for name, p in KINDS.items() if p == path), path)


def import_path(path: str) -> Any:
    """The object at "package.module.name"."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def settings_class(arch: object) -> type[NetworkSettings]:
    """The settings class of model.arch: a name in the table, or the import path of a NetworkSettings subclass."""
    path = KINDS.get(arch) if isinstance(arch, str) else None
    if path is None and isinstance(arch, str) and "." in arch:
        path = arch
    try:
        cls = import_path(path) if path else None
    except (ImportError, AttributeError):
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, NetworkSettings)):
        raise CatdogError(
            f"model.arch={arch} is not a network kind{did_you_mean(str(arch), KINDS, '')}; or give the import "
            "path of a NetworkSettings class (docs/add-a-network.md)."
        )
    return cls


def network_settings(
    model: Mapping, in_channels: int, resolution: int, others: tuple[str, ...] = ()
) -> NetworkSettings:
    """The settings of model.arch's kind from `model`'s keys; a key that is neither the kind's nor in `others`
    (the caller's) is one message naming the kind's keys."""
    arch = model.get("arch", DEFAULT)
    check_kind_keys(arch, model, others)
    cls = settings_class(arch)
    return cls(in_channels, resolution, **{k: model[k] for k in cls.keys() if k in model})


def check_kind_keys(arch: object, given: Mapping, others: tuple[str, ...]) -> None:
    """One message for the keys of `model` that the chosen kind does not take, naming the kind's keys; several
    keys of another kind (a preset's, as experiment=fast's under model=resnet) are named together, with the
    overrides that remove them."""
    cls = settings_class(arch)
    unknown = sorted(set(given) - set(cls.keys()) - set(others) - {"arch"})
    if not unknown:
        return
    name, key = arch_name(cls), unknown[0]
    keys = f"{name}'s keys (model.arch={name}): " + ", ".join(f"model.{k}" for k in cls.keys())
    foreign = {k: other_kind_of(k, name) for k in unknown}
    if len(unknown) > 1 and all(foreign.values()):
        kinds = " and ".join(sorted(set(filter(None, foreign.values()))))
        removal = " ".join(f"~model.{k}" for k in unknown)
        raise CatdogError(
            f"{', '.join(f'model.{k}' for k in unknown)} are not settings of model: {kinds} keys, and "
            f"model.arch={name}. Set by a preset (experiment=...)? Remove them for {name}: {removal}. {keys}"
        )
    close = get_close_matches(key, (*cls.keys(), *others), n=1)
    detail = f" (did you mean model.{close[0]}?)" if close else ""
    if foreign[key]:
        detail = (
            f": a {foreign[key]} key, and model.arch={name} (model={name} picks {name}'s card without it)"
        )
    raise CatdogError(f"model.{key} is not a setting of model{detail}. {keys}")


def other_kind_of(key: str, name: str) -> str | None:
    """The first kind other than `name` that takes `key`, if any."""
    return next((k for k in KINDS if k != name and key in settings_class(k).keys()), None)


def build_network(settings: NetworkSettings, num_classes: int, mean=None, std=None):
    """The kind's network (a catdog.models.network.Network), built by the builder its settings name."""
    return import_path(settings.builder)(settings, num_classes, mean, std)
