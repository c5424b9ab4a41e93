"""Checks on the composed config that turn impossible values into one message naming the key."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from catdog.data.sources import LAYOUTS
from catdog.data.spec import LOADERS
from catdog.data.split import BALANCE_MODES
from catdog.errors import CatdogError


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, float | int) and not isinstance(v, bool)


def _int_list(v) -> bool:
    return _is_int(v) or (hasattr(v, "__len__") and not isinstance(v, str) and all(_is_int(i) for i in v))


CHECKS = {
    "data.resolution": (lambda v: _is_int(v) and v >= 1, "a positive integer (pixels), e.g. 50"),
    "data.channels": (lambda v: v in (1, 3), "1 (grayscale) or 3 (colour)"),
    "data.batch_size": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "a positive integer"),  # predict's
    "data.val_fraction": (lambda v: _is_number(v) and 0 < v < 1, "a fraction between 0 and 1"),
    "model.channels": (lambda v: _int_list(v) and not _is_int(v) and len(v) > 0 and min(v) >= 1,
                       "a list of positive integers, e.g. [32,64,128]"),
    "model.kernel": (lambda v: _is_int(v) and v >= 1 or _int_list(v) and len(v) > 0 and min(v) >= 1,
                     "a positive integer or one per conv stage, e.g. 5 or [5,3,3]"),
    "model.pool": (lambda v: _is_int(v) and v >= 1, "a positive integer (1 = no pooling)"),
    "model.hidden": (lambda v: _int_list(v) and not _is_int(v) and all(i >= 1 for i in v),
                     "a list of dense-layer widths, e.g. [512] or []"),
    "model.dropout": (lambda v: _is_number(v) and 0 <= v < 1, "a probability in [0, 1)"),
    "model.convs_per_stage": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "model.label_smoothing": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "model.batchnorm": (lambda v: isinstance(v, bool), "true or false"),
    "model.optimizer.lr": (lambda v: _is_number(v) and v > 0, "a positive number, e.g. 0.001"),
    "data.test_fraction": (lambda v: _is_number(v) and 0 <= v < 1, "a fraction in [0, 1)"),
    "trainer.max_epochs": (lambda v: v is None or (_is_int(v) and v >= -1),
                           "a positive integer (-1 = no limit)"),
    "trainer.devices": (lambda v: _is_int(v) and (v >= 1 or v == -1) or v == "auto" or _int_list(v) and not _is_int(v),
                        "a number of devices (-1 = all), 'auto', or a list of device ids"),
    "trainer.num_nodes": (lambda v: _is_int(v) and v >= 1, "a positive integer (machines)"),
    "seed": (lambda v: _is_int(v), "an integer (the split and the batch order follow it)"),
    "data.layout": (lambda v: v in LAYOUTS, " or ".join(LAYOUTS)),
    "data.balance": (lambda v: v in BALANCE_MODES, " or ".join(BALANCE_MODES)),
    "data.loader": (lambda v: v in LOADERS, " or ".join(LOADERS)),
    "data.source": (lambda v: v is not None and str(v).strip() != "",
                    "a folder or archive of images (is CATDOG_DATA set but empty?)"),
    "tags": (lambda v: hasattr(v, "__len__") and not isinstance(v, str), "a list, e.g. [baseline,small]"),
}  # fmt: skip


def validate(cfg: DictConfig) -> None:
    """Raise CatdogError for the first config value that cannot work."""
    for key, (ok, expected) in CHECKS.items():
        value = OmegaConf.select(cfg, key, default=KeyError)
        if value is KeyError:
            continue
        if not ok(value):
            raise CatdogError(
                f"{key}={value!r} is invalid: expected {expected}. Fix it on the command line or in configs/."
            )
    if cfg.get("test") and not OmegaConf.select(cfg, "data.test_fraction", default=0):
        raise CatdogError(
            "test=true needs a test split: set data.test_fraction, e.g. data.test_fraction=0.1."
        )
