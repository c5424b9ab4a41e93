"""The command line of a Hydra command as catdog reads it: `~` expanded, each override checked by Hydra's own parser,
the keys catdog 0.2 spelled differently named with their new spelling, and model.arch=NAME read as the kind's card."""

from __future__ import annotations

import os

from catdog.errors import CatdogError


def override_key(override: str) -> str:
    """The config key a Hydra override sets: `a.b` of `a.b=1`, `+a.b=1`, `++a.b=1` and `~a.b`."""
    return override.partition("=")[0].lstrip("+~")


def parse_overrides(overrides: list[str]) -> list:
    """Hydra's parsed Override objects of `key=value` strings."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(overrides)


def read_overrides(argv: list[str]) -> list[str]:
    """The command line with `~` expanded at the start of a value (`data.source=~/photos.zip`: the shell leaves it,
    and Hydra's grammar refuses it), each override checked by Hydra's own parser, so a syntax error is one
    CatdogError that names the override and shows the quoting that fixes it."""
    from hydra.errors import OverrideParseException

    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and value.startswith("~") and not arg.startswith("-"):
            arg = f"{key}={os.path.expanduser(value)}"
        if not arg.startswith("-") and (eq or arg.startswith("~")):
            try:
                parse_overrides([arg])
            except OverrideParseException as e:
                reason = str(e.message).splitlines()[0]
                raise CatdogError(
                    f"cannot read the override {arg!r} ({reason}). A value with spaces or any of = , [ ] {{ }} ( ) "
                    f"' \" needs quotes that reach Hydra, inside the shell's: \"{key}='...'\" (see "
                    "https://hydra.cc/docs/advanced/override_grammar/basic/)."
                ) from e
        check_moved_key(override_key(arg))
        out.append(arch_card(arg))
    return out


def arch_card(override: str) -> str:
    """`model.arch=resnet` as `model=resnet` (in a sweep too: `model.arch=convnet,resnet`): the kind's card, its keys
    at their defaults, so that the default card's ConvNet keys do not come along to a kind that takes none of them.
    A settings class named by import path (a dot in the value) stays a plain value."""
    key, eq, value = override.partition("=")
    return f"model={value}" if key == "model.arch" and eq and "." not in value else override


def current_spelling(override: str) -> str:
    """An override recorded by catdog 0.2 (`model.net.kernel=3`, e.g. in a run dir being resumed) as 0.3 writes it."""
    prefix = "+" if override.startswith("+") else ""
    key = override.removeprefix(prefix)
    return prefix + "model." + key.removeprefix("model.net.") if key.startswith("model.net.") else override


def check_moved_key(key: str) -> None:
    """catdog 0.2 nested the network's keys under model.net; 0.3 has them back at model.* (the design's
    `model.kernel=3,5`): an override of the 0.2 key gets the one to use."""
    parts = key.split(".")
    if parts[:2] == ["model", "net"]:
        new = ".".join(["model", *parts[2:]]) if len(parts) > 2 else "model.channels, model.kernel, ..."
        raise CatdogError(
            f"{key} is now {new} (the network's keys are back at model.* since catdog 0.3): write "
            f"{new if len(parts) > 2 else 'each key'}=... instead."
        )
