"""Hydra's composition errors as one `error:` line: a mistyped key or group option gets the closest real one and the
list to choose from, instead of Hydra's multi-line message whose `+key=` advice leads to a TypeError later."""

from __future__ import annotations

import re
from collections.abc import Callable

from catdog.errors import did_you_mean
from catdog.overrides import override_key

_NOT_IN_STRUCT = re.compile(r"Could not override '([^']+)'")
_NO_OPTION = re.compile(r"Could not find '([^']+)'\s+Available options in '([^']+)':((?:\s*\t\S+)+)")
_UNEXPECTED = re.compile(
    r"Error in call to target '([\w.]+)'.*unexpected keyword argument '(\w+)'.*full_key: (\S+)", re.S
)


def config_groups(loader, parent: str = "") -> list[str]:
    """Every config group under `parent` (model, model/optimizer, ...), from Hydra's config loader."""
    groups = []
    for name in sorted(
        set(loader.list_groups(parent)) - {"hydra"}
    ):  # hydra/*: Hydra's own, rarely a typo's aim
        path = f"{parent}/{name}" if parent else name
        groups += [path, *config_groups(loader, path)]
    return groups


def unknown_key(key: str, config_name: str, overrides: list[str]) -> str:
    """The message for an override of a key the config does not have, from the config composed without it."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    if "/" in key or "." not in key:  # a group (model/optimizer) or a top-level key
        options = set(config_groups(GlobalHydra.instance().config_loader()))
        if "." not in key:
            options |= {str(k) for k in compose(config_name, overrides=[]).keys()} - {"hydra"}
        return f"{key} is not a config group or key{did_you_mean(key, options)}"
    parent, _, name = key.rpartition(".")
    rest = [o for o in overrides if override_key(o) != key]
    node = OmegaConf.select(compose(config_name, overrides=rest), parent, default=KeyError)
    if node is KeyError:  # model.augmnt.blur: the wrong name is the parent's
        return unknown_key(parent, config_name, rest)
    if node is None:  # model.augment: null in the config has no keys to override yet
        return f"{key} is not a config key: {parent} is null here. Add the key with +{key}=..., or give {parent} whole"
    keys = [str(k) for k in node.keys() if not str(k).startswith("_")] if OmegaConf.is_dict(node) else []
    return f"{key} is not a config key{did_you_mean(name, keys, parent + '.')}"


def composition_error(exc: BaseException, config_name: str, overrides: list[str]) -> str | None:
    """One line for Hydra's "Could not override 'x'" and "Could not find 'group/option'" (None for the rest)."""
    text = str(exc)
    if found := _NO_OPTION.search(text):
        option, group, listed = found.group(1).rpartition("/")[2], found.group(2), found.group(3).split()
        return f"{group}={option} is not an option of {group}{did_you_mean(option, listed)}"
    if found := _NOT_IN_STRUCT.search(text):
        try:
            return unknown_key(found.group(1), config_name, overrides)
        except Exception:  # noqa: BLE001 - another bad override: Hydra's own message then
            return None
    return None


def unexpected_argument(text: str) -> str | None:
    """`+data.resolutoin=64` reaches the constructor as an unknown argument: name the key and the real ones."""
    import importlib
    import inspect

    found = _UNEXPECTED.search(text)
    if not found:
        return None
    target, name, key = found.groups()
    module, _, attr = target.rpartition(".")
    params = [
        p for p in inspect.signature(getattr(importlib.import_module(module), attr)).parameters if p != "self"
    ]
    return f"{key}.{name} is not a setting of {key}{did_you_mean(name, params, key + '.')}"


def one_line_config_errors(config_name: str, overrides: list[str]) -> Callable[[Exception], None]:
    """The handler catdog.compat installs around Hydra's composition: a known mistake exits with one line."""
    import os
    import sys

    def handle(exc: Exception) -> None:
        message = composition_error(exc, config_name, overrides)
        if message is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise exc
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)

    return handle
