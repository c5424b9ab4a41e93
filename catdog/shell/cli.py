"""What every entry point does with errors: a user's mistake is one line on stderr and a non-zero exit;
inside a Hydra multirun, a failing job is recorded and the sweep goes on."""

from __future__ import annotations

import functools
import os
import re
import signal
import sys
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from catdog.compat import on_hydra_error
from catdog.errors import CatdogError
from catdog.io import disk_full_error, is_disk_full, written_file
from catdog.overrides import read_overrides
from catdog.run.quiet import quiet_disk_full_in_threads, quiet_libraries
from catdog.shell.config_errors import one_line_config_errors, unexpected_argument

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # package data: the wheel carries it
DISK_FULL_FIX = (
    "Free some space, or put the runs (paths.log_dir) and the cache (data.cache_dir) on a larger disk; then resume "
    "with hydra.run.dir=<run dir> ckpt_path=last."
)

# Lightning's optional loggers raise ModuleNotFoundError without `name`: "Requirement 'wandb>=0.12.10' not met."
_REQUIREMENT = re.compile(r"Requirement '([A-Za-z0-9_.-]+)")
_CONFIG_KEY = re.compile(r"full_key: (\S+)")


def missing_package(exc: BaseException) -> str | None:
    """The package an import failed for because it is not installed (None for a `_target_` typo or no import)."""
    if not isinstance(exc, ModuleNotFoundError):
        return None
    requirement = _REQUIREMENT.match(str(exc))
    package = (exc.name or (requirement.group(1) if requirement else "")).partition(".")[0]
    return package if package not in ("", "catdog") and find_spec(package) is None else None


def run_dir() -> str:
    """Where this run writes (for a full disk whose error names no file, e.g. in TensorBoard's writer thread)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "a file"
    return f"the run's files in {HydraConfig.get().runtime.output_dir}"


def user_error(exc: BaseException | None) -> str | None:
    """The message of a CatdogError, Lightning config error, missing optional package, wrong `_target_` or
    constructor argument in a config, or full disk in the chain."""
    from hydra.errors import InstantiationException

    # only code that imported Lightning can raise its MisconfigurationException: importing Lightning to compare
    # cost every error met before (a bad override, a config check) ~3.5 s of its ~5 s on a 2-core CPU
    fabric = sys.modules.get("lightning_fabric.utilities.exceptions")
    config_errors = (CatdogError, fabric.MisconfigurationException) if fabric else (CatdogError,)
    seen = set()
    key = None
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, config_errors):
            return str(exc)
        if package := missing_package(exc):
            needs = f"{key} needs" if key else "this config needs"
            return f"{needs} the optional package {package}, which is not installed: pip install {package}"
        if isinstance(exc, InstantiationException) and (found := _CONFIG_KEY.search(str(exc))):
            key = found.group(1)
        cause = exc.__cause__
        if isinstance(exc, InstantiationException) and isinstance(cause, TypeError | ImportError):
            if message := unexpected_argument(str(exc)):  # `+data.resolutoin=64`
                return message
            if not missing_package(cause):  # Hydra's message names the target and the config key
                return f"{exc}\n(HYDRA_FULL_ERROR=1 shows the traceback)"
        if is_disk_full(exc):
            return str(disk_full_error(written_file(exc) or run_dir(), DISK_FULL_FIX))
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


def exit_interrupted(exc: BaseException) -> None:
    """SIGTERM (Lightning raises SIGTERMException, a SystemExit) or Ctrl-C (a KeyboardInterrupt, which Lightning
    turns into sys.exit(1)): one status line with the command that resumes the run, and exit 128 + the signal (143,
    130), as a shell reports a kill."""
    from hydra.core.hydra_config import HydraConfig
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    if isinstance(exc, SIGTERMException):
        signum, how = signal.SIGTERM, "SIGTERM (pre-emption, scancel or kill)"
    elif isinstance(exc, KeyboardInterrupt) or isinstance(exc.__context__, KeyboardInterrupt):
        signum, how = signal.SIGINT, "Ctrl-C"
    else:
        raise exc
    from catdog.shell.rerun import resume_command

    run_dir = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else "<this run dir>"
    last = os.path.join(run_dir, "checkpoints", "last.ckpt")
    status = (
        f"{last} is saved; resume with `{resume_command(run_dir)}`"
        if os.path.isfile(last)
        else "no checkpoint was saved yet."
    )
    print(f"error: stopped by {how}; {status}", file=sys.stderr)
    sys.exit(128 + signum)


def guarded(fn: Callable, *args, **kwargs):
    """Call fn; on failure exit with one line, or in a multirun job record the failure and return None."""
    quiet_disk_full_in_threads()
    quiet_libraries()
    try:
        return fn(*args, **kwargs)
    except (SystemExit, KeyboardInterrupt) as e:
        exit_interrupted(e)
    except Exception as e:  # noqa: BLE001 - sorted into user errors and bugs below
        if in_multirun():
            from catdog.sweeps.job_files import record_failure

            record_failure(e, user_error(e))
            return None
        report_and_exit(e)


def usage_text(usage: str, config_name: str) -> str:
    """A command's written usage: `usage` (its module's docstring), then the settings of its entry config with
    their comments (configs/<config_name>.yaml below its defaults list)."""
    lines = (CONFIG_DIR / f"{config_name}.yaml").read_text().splitlines()
    # the entry config's own keys start after the defaults list, whose last entry is `- _self_`
    start = next((i + 1 for i, line in enumerate(lines) if line.strip() == "- _self_"), 0)
    # up to the hydra node (how the run dir and log are named, not a setting of the command)
    end = next((i for i, line in enumerate(lines) if line.startswith("hydra:")), len(lines))
    own = [line for line in lines[start:end] if line.strip() and not line.startswith("task_name:")]
    settings = "\n".join(own)
    return f"{usage.strip()}\n\nSettings (key=value on the command line; configs/{config_name}.yaml):\n{settings}\n"


def run_entry(
    task: Callable[[DictConfig], Any], config_name: str, *before: Callable[[], None], usage: str | None = None
) -> None:
    """Every Hydra command's start: with `usage` (the command's own help), -h/--help prints it and its settings
    (usage_text) instead of Hydra's generic page; else check the overrides, make a mistyped key or option one
    line, run `before` (e.g. train.py remembers its command line), then `task` as the Hydra app of
    configs/<config_name>.yaml, guarded. Hydra names the job and its log after configs' `hydra.job.name`, else
    `task`'s file (train, evaluate, ...)."""
    if usage is not None and {"-h", "--help"} & set(sys.argv[1:]):
        print(usage_text(usage, config_name))
        return
    import hydra

    sys.argv[1:] = guarded(read_overrides, sys.argv[1:])
    on_hydra_error(one_line_config_errors(config_name, sys.argv[1:]))
    for step in before:
        step()

    @functools.wraps(task)
    def main(cfg: DictConfig) -> Any:
        return guarded(task, cfg)

    hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)(main)()
