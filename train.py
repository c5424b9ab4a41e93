"""Train a ConvNet: `python train.py [overrides]`, `python train.py -m model.net.kernel=3,5` for a sweep."""

import sys

import hydra
from omegaconf import DictConfig

from catdog.run.cli import guarded, read_overrides
from catdog.run.launch import remember_entry_command
from catdog.run.rerun import restore_overrides


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # imported here, not above: Lightning and torch take seconds to import, and --help, --cfg job and shell
    # tab completion return before this function runs
    from catdog.run.training import optimized_value, train

    metrics = guarded(train, cfg)  # None when a sweep job failed (recorded in its dir's failed.json)
    return optimized_value(metrics or {}, cfg.get("optimized_metric"))


if __name__ == "__main__":
    sys.argv[1:] = guarded(read_overrides, sys.argv[1:])
    sys.argv[1:] = guarded(restore_overrides, sys.argv[1:])  # ckpt_path=last in a run dir: its overrides
    remember_entry_command()
    main()
