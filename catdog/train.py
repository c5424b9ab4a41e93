"""Train a ConvNet: `catdog train [overrides]` (or `python train.py ...` in a clone), `-m` for a sweep."""

import sys

from omegaconf import DictConfig

from catdog.run.launch import remember_entry_command
from catdog.shell.cli import guarded, in_multirun, run_entry
from catdog.shell.rerun import restore_overrides


def main(cfg: DictConfig) -> float | None:
    """Train; the value a sweeper optimises (a failed sweep job returns None: recorded in its dir's failed.json)."""
    # imported here, not above: Lightning and torch take seconds to import, and --help, --cfg job and shell
    # tab completion return before this function runs; a run checks its config before them (it needs neither): a
    # wrong value is one line after ~0.6 s, not after the ~5 s of those imports. A sweep's job logs its share of
    # the cores first, failed or not: train() checks there.
    if not in_multirun():
        from catdog.run.checks import validate

        validate(cfg)
    from catdog.run.training import optimized_value, train

    return optimized_value(train(cfg), cfg.get("optimized_metric"))


def restore_resumed_overrides() -> None:
    """`ckpt_path=last` in an existing run dir: that run's overrides, unless the command line gives them anew."""
    sys.argv[1:] = guarded(restore_overrides, sys.argv[1:])


def cli() -> None:
    """`catdog train` / `python train.py`: the training config's Hydra app, its overrides checked first."""
    run_entry(main, "train", restore_resumed_overrides, remember_entry_command)


if __name__ == "__main__":
    cli()
