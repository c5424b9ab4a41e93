"""Checks on the composed config that turn impossible values into one message naming the key."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from catdog.data.datamodule import LOADERS
from catdog.data.sources import LAYOUTS
from catdog.data.split import BALANCE_MODES
from catdog.errors import CatdogError

log = logging.getLogger(__name__)


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
    "data.fast_decode": (lambda v: isinstance(v, bool), "true or false"),
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


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str | Path) -> str | None:
    """The checkpoint to resume: `last` is this run dir's checkpoints/last.ckpt and must exist; `auto` is that file
    if it exists, else a fresh start (for jobs a cluster requeues after pre-emption, with the same overrides)."""
    if ckpt_path is None:
        return None
    last = Path(output_dir) / "checkpoints" / "last.ckpt"
    if str(ckpt_path) == "auto":
        return str(last) if last.is_file() else None
    path = last if str(ckpt_path) == "last" else Path(str(ckpt_path))
    if not path.is_file():
        hint = (
            "ckpt_path=last resumes the run in the dir given by hydra.run.dir: "
            "run `python train.py hydra.run.dir=<old run dir> ckpt_path=last ...`."
            if path is last
            else "Give the path of a .ckpt file (e.g. <run dir>/checkpoints/last.ckpt)."
        )
        raise CatdogError(f"ckpt_path={ckpt_path}: no checkpoint at {path}. {hint}")
    return str(path)


def native_bf16(gpu: bool) -> bool:
    """Whether bf16 runs in hardware here: emulated bf16 on an older CPU is slower than float32."""
    if gpu:
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private: absent in some torch builds
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(trainer: DictConfig) -> None:
    """trainer.precision=auto: bf16 mixed precision where the chip computes bf16 natively (convolutions about 2x
    faster on a recent CPU), else float32 on a CPU and float16 mixed on an older GPU. Any other value must be one
    Lightning knows: checked here, before the data is prepared."""
    from lightning_fabric.connector import _convert_precision_to_unified_args

    precision = trainer.get("precision")
    if str(precision) != "auto":
        try:
            _convert_precision_to_unified_args(precision)
        except ValueError as e:
            raise CatdogError(f"trainer.precision={precision}: {e}, or auto.") from e
        return
    accelerator = str(trainer.get("accelerator", "auto")).lower()
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if native_bf16(gpu):
        trainer.precision = "bf16-mixed"
    else:
        trainer.precision = "16-mixed" if gpu else "32-true"
    log.info("trainer.precision=auto: %s on this machine", trainer.precision)


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
        raise CatdogError(
            "trainer.accelerator=mps, but Apple's MPS is not available here. Use trainer.accelerator=cpu."
        )
