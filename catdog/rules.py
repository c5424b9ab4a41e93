"""The checks on config values, shared by every spec and settings object: plain Python, no torch or Lightning.

The config check (catdog.run.checks) runs them before any photo is decoded, in commands that start without torch
(`catdog.prepare`); the components that are built later run the same ones, so each rule exists once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
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


def require(ok: bool, key: str, value, expected: str) -> None:
    """The rule `ok` for config key `key`: its one-line message (invalid) when broken."""
    if not ok:
        raise invalid(key, value, expected)


def field_rules(
    owner: object, prefix: str, rows: Iterable[tuple[str, bool, str]]
) -> list[Callable[[], None]]:
    """Rows of (field, ok, expected) of a settings object as check_all's rules, each naming key prefix + field."""
    return [
        partial(require, ok, prefix + name, getattr(owner, name), expected) for name, ok, expected in rows
    ]


class ConfigErrors(CatdogError):
    """Several config values that cannot work, named at once: a line each under a count."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} config values cannot work:\n{lines}")


def check_all(*rules: Callable[[], object]) -> None:
    """Run every rule and raise once for all the values that broke one: the rule's own error when one did, else a
    ConfigErrors with a line each (a value two rules name, such as data.resolution, once)."""
    errors: list[CatdogError] = []
    for rule in rules:
        try:
            rule()
        except CatdogError as exc:
            errors.append(exc)
    problems = list(
        dict.fromkeys(p for e in errors for p in (e.problems if isinstance(e, ConfigErrors) else [str(e)]))
    )
    if len(problems) == 1:
        raise errors[0]
    if problems:
        raise ConfigErrors(problems)


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
