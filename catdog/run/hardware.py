"""What this machine can do: a GPU or not, bf16 in hardware or not; settles trainer.precision=auto and the device
that evaluate and predict score on."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig

from catdog.compat import check_precision_name
from catdog.errors import CatdogError
from catdog.rules import check_known

log = logging.getLogger(__name__)


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
    precision = trainer.get("precision")
    if str(precision) != "auto":
        try:
            check_precision_name(precision)
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


def no_gpu(key: str, value: str) -> CatdogError:
    """The one message for a GPU asked for (by `key`) on a machine where torch sees none."""
    return CatdogError(
        f"{key}={value}, but PyTorch sees no CUDA GPU on this machine "
        f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). "
        f"Use {key}=cpu (or auto), or install a CUDA build of torch on a machine with a GPU."
    )


def resolve_device(device: str) -> str:
    """The torch device a trained model scores on (the `device` key): auto = the GPU where torch sees one, else the
    CPU."""
    device = str(device).lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise no_gpu("device", device)
        return "cuda"
    return "cpu"


def check_trainer_keys(trainer: DictConfig) -> None:
    """A key Lightning's Trainer does not take (`+trainer.max_epoch=3`) is named before the photos are decoded, not
    when the Trainer is built after them."""
    import inspect

    import pytorch_lightning as pl

    known = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}
    check_known("trainer", [str(k) for k in trainer if k != "_target_"], known)


def check_accelerator(trainer: DictConfig) -> None:
    """Stop before training when the config asks for a GPU this machine does not have."""
    accelerator = str(trainer.get("accelerator", "auto")).lower()
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise no_gpu("trainer.accelerator", accelerator)
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise CatdogError(
            "trainer.accelerator=mps, but Apple's MPS is not available here. Use trainer.accelerator=cpu."
        )
