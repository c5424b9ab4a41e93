"""One exception type for every mistake a user can fix: its message names the file or config key and the fix."""

from collections.abc import Iterable
from difflib import get_close_matches


class CatdogError(Exception):
    """A user-facing error; entry points print its message alone, without a traceback."""


def did_you_mean(word: str, options: Iterable[str], prefix: str = "") -> str:
    """ " (did you mean X?)" for the closest of `options` (difflib's ratio >= 0.6), then ". Options: ..." with all
    of them, so a message that names a wrong key or choice names the right ones too."""
    options = sorted(options)
    close = get_close_matches(word, options, n=1)
    hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
    return f"{hint}. Options: {', '.join(prefix + o for o in options)}"
