"""Train a ConvNet: `python train.py [overrides]`, `python train.py -m model.kernel=3,5` for a sweep.

The same as `catdog train ...`: this file only finds the clone's .venv, then runs catdog/train.py."""

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

if __name__ == "__main__":
    # this file stays the program: a resume or a DDP rank runs `python train.py` again
    from catdog.train import cli

    cli()
