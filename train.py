"""Train a ConvNet: `python train.py [overrides]`, `python train.py -m model.kernel=3,5` for a sweep."""

import os
import sys
from importlib.util import find_spec
from pathlib import Path

VENV_PYTHON = Path(__file__).resolve().parent / ".venv" / "bin" / "python"


def use_project_venv() -> None:
    """`python train.py ...` pasted straight after `make train`: the shell's python lacks the packages `make` put
    into .venv, so the same command line runs on .venv's python (no activation needed); with no .venv, one line."""
    if find_spec("hydra") is not None:
        return
    if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
        os.execv(VENV_PYTHON, [str(VENV_PYTHON), *sys.argv])
    sys.exit(
        f"error: {sys.executable} has no catdog packages: run `make install` (creates .venv) or pip install -e ."
    )


use_project_venv()

from omegaconf import DictConfig  # noqa: E402 - after the interpreter check

from catdog.run.cli import guarded, in_multirun, run_entry  # noqa: E402
from catdog.run.launch import remember_entry_command  # noqa: E402
from catdog.run.rerun import restore_overrides  # noqa: E402


def main(cfg: DictConfig) -> float | None:
    """Train; the value a sweeper optimises (a failed sweep job returns None: recorded in its dir's failed.json)."""
    # imported here, not above: Lightning and torch take seconds to import, and --help, --cfg job and shell
    # tab completion return before this function runs; a run checks its config before them (it needs neither): a
    # wrong value is one line after ~0.6 s, not after the ~5 s of those imports on a 2-core Xeon (issue 26). A
    # sweep's job logs its share of the cores first, failed or not: train() checks there.
    if not in_multirun():
        from catdog.run.checks import validate

        validate(cfg)
    from catdog.run.training import optimized_value, train

    return optimized_value(train(cfg), cfg.get("optimized_metric"))


def restore_resumed_overrides() -> None:
    """`ckpt_path=last` in an existing run dir: that run's overrides, unless the command line gives them anew."""
    sys.argv[1:] = guarded(restore_overrides, sys.argv[1:])


if __name__ == "__main__":
    run_entry(main, "train", restore_resumed_overrides, remember_entry_command)
