"""The checks on config values, shared by every spec and settings object: plain Python, no torch or Lightning.

The config check (catdog.run.checks) runs them before any photo is decoded, in commands that start without torch
(`catdog.prepare`); the components that are built later run the same ones, so each rule exists once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeGuard

from catdog.errors import CatdogError, did_you_mean


def is_int(v) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    return isinstance(v, float | int) and not isinstance(v, bool)


def is_int_list(v) -> TypeGuard[list[int] | tuple[int, ...]]:
    return isinstance(v, list | tuple) and all(is_int(i) for i in v)


def invalid(key: str, value, expected: str) -> CatdogError:
    """The one-line message for a config value that cannot work."""
    return CatdogError(
        f"{key}={value!r} is invalid: expected {expected}. Fix it on the command line or in configs/."
    )


def check_choice(key: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise invalid(key, value, " or ".join(choices))


def check_resolution(value) -> None:
    """data.resolution: the side of the square images the network sees (the model's input comes from it)."""
    if not (is_int(value) and value >= 1):
        raise invalid("data.resolution", value, "a positive integer (pixels), e.g. 50")


def check_channels(value) -> None:
    """data.channels: decoding makes grayscale or RGB images, so the network's input has 1 or 3 channels."""
    if value not in (1, 3) or isinstance(value, bool):
        raise invalid("data.channels", value, "1 (grayscale) or 3 (colour)")


def check_known(group: str, given: Iterable[str], known: Iterable[str]) -> None:
    """One message for the first key of `group` (e.g. data) that is none of `known`, with the closest real one."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise CatdogError(
            f"{group}.{unknown[0]} is not a setting of {group}{did_you_mean(unknown[0], known, group + '.')}"
        )


def pick(values: Mapping, names: Iterable[str]) -> dict:
    """The entries of `values` named in `names` (a settings object's fields), the rest left to their owners."""
    return {k: values[k] for k in names if k in values}
