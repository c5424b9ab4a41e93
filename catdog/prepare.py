"""Prepare the data without training: find, decode and cache the images, then print what was found.

usage: python -m catdog.prepare [OVERRIDES...]

Takes the same `data.*` overrides as train.py (only the data group of configs/train.yaml is used), e.g.
  python -m catdog.prepare data.source=/path/to/PetImages data.resolution=64 data.channels=3

Prints the images per class, the files skipped per reason, the original image sizes and the cache path.
A later `python train.py` with the same data settings loads that cache instead of decoding again.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from catdog.data.cache import CachedArrays
from catdog.data.preprocess import prepare_from_config, summarize
from catdog.errors import CatdogError
from catdog.run.checks import validate
from catdog.run.cli import guarded

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def prepare(overrides: list[str]) -> CachedArrays:
    """Compose the training config with `overrides` and build (or load) the cache of its data group."""
    try:
        with hydra.initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = hydra.compose("train", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise CatdogError(f"{e} (see `python -m catdog.prepare --help`)") from e
    validate(cfg, model=False)  # preparing 16 px images is fine even if the default net needs more
    return prepare_from_config(OmegaConf.to_container(cfg.data, resolve=True))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if {"-h", "--help"} & set(argv):
        print(__doc__)
        return
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")  # the report is printed
    arrays = guarded(prepare, argv)
    print(summarize(arrays.report, first=10))
    print(f"cache: {arrays.directory}")


if __name__ == "__main__":
    main()
