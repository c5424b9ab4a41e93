"""What every entry point does with errors: a user's mistake is one line on stderr and a non-zero exit."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from catdog.errors import CatdogError


def user_error(exc: BaseException) -> str | None:
    """The message of a CatdogError (or Lightning's config error) anywhere in the exception's chain."""
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, CatdogError | MisconfigurationException):
            return str(exc)
        exc = exc.__cause__ or exc.__context__
    return None


def report_and_exit(exc: BaseException) -> None:
    """Print a user error without a traceback (unless HYDRA_FULL_ERROR=1) and exit 1; re-raise anything else."""
    message = user_error(exc)
    if message is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise exc
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def guarded(fn: Callable, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - sorted into user errors and bugs by report_and_exit
        report_and_exit(e)
