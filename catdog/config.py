"""Checks on the composed config that turn impossible values into one message naming the key."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from catdog.errors import CatdogError


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_list(v) -> bool:
    return _is_int(v) or (hasattr(v, "__len__") and not isinstance(v, str) and all(_is_int(i) for i in v))


CHECKS = {
    "data.resolution": (lambda v: _is_int(v) and v >= 1, "a positive integer (pixels), e.g. 50"),
    "data.channels": (lambda v: v in (1, 3), "1 (grayscale) or 3 (colour)"),
    "data.batch_size": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "data.val_fraction": (lambda v: isinstance(v, float | int) and 0 < v < 1, "a fraction between 0 and 1"),
    "model.channels": (lambda v: _int_list(v) and not _is_int(v) and len(v) > 0 and min(v) >= 1,
                       "a list of positive integers, e.g. [32,64,128]"),
    "model.kernel": (lambda v: _int_list(v) and (min(v) if not _is_int(v) else v) >= 1,
                     "a positive integer or one per conv stage, e.g. 5 or [5,3,3]"),
    "model.pool": (lambda v: _is_int(v) and v >= 1, "a positive integer (1 = no pooling)"),
    "model.hidden": (lambda v: _int_list(v) and not _is_int(v) and all(i >= 1 for i in v),
                     "a list of dense-layer widths, e.g. [512] or []"),
    "model.dropout": (lambda v: isinstance(v, float | int) and 0 <= v < 1, "a probability in [0, 1)"),
}  # fmt: skip


def _get(cfg: DictConfig, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return KeyError
        node = node[part]
    return node


def validate(cfg: DictConfig) -> None:
    """Raise CatdogError for the first config value that cannot work."""
    for key, (ok, expected) in CHECKS.items():
        value = _get(cfg, key)
        if value is KeyError:
            continue
        if not ok(value):
            raise CatdogError(f"{key}={value!r} is invalid: expected {expected}. Fix it on the command line or in configs/.")


def check_accelerator(trainer: DictConfig) -> None:
    """Stop before training when the config asks for a GPU this machine does not have."""
    accelerator = str(trainer.get("accelerator", "auto")).lower()
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise CatdogError(
            f"trainer.accelerator={accelerator}, but PyTorch sees no CUDA GPU on this machine "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). "
            "Use trainer.accelerator=cpu (or auto), or install a CUDA build of torch on a machine with a GPU."
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise CatdogError("trainer.accelerator=mps, but Apple's MPS is not available here. Use trainer.accelerator=cpu.")
