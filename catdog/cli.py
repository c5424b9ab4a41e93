"""What every entry point does with errors: a user's mistake is one line on stderr and a non-zero exit;
inside a Hydra multirun, a failing job is recorded and the sweep goes on."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from catdog.errors import CatdogError


def user_error(exc: BaseException) -> str | None:
    """The message of a CatdogError, Lightning config error or missing optional package in the chain."""
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, CatdogError | MisconfigurationException):
            return str(exc)
        if isinstance(exc, ModuleNotFoundError) and not (exc.name or "").startswith("catdog"):
            return f"{exc} (an optional package the config asks for: install it with pip)"
        exc = exc.__cause__ or exc.__context__
    return None


def report_and_exit(exc: BaseException) -> None:
    """Print a user error without traceback (unless HYDRA_FULL_ERROR=1), exit 1; re-raise the rest."""
    message = user_error(exc)
    if message is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise exc
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def in_multirun() -> bool:
    """True inside a job of `python train.py -m ...` (any sweeper or launcher)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def guarded(fn: Callable, *args, **kwargs):
    """Call fn; on failure exit with one line, or in a multirun job record the failure and return None."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - sorted into user errors and bugs below
        if in_multirun():
            from catdog.sweep import record_failure

            record_failure(e, user_error(e))
            return None
        report_and_exit(e)
