"""What this machine can do: a GPU or not, bf16 in hardware or not; settles trainer.precision=auto and the device
that evaluate and predict score on."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from omegaconf import DictConfig

from catdog.compat import check_precision_name
from catdog.errors import CatdogError
from catdog.rules import check_known

log = logging.getLogger(__name__)
T = TypeVar("T")


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


def busy_seconds() -> float | None:
    """CPU seconds the machine's cores spent busy since boot (steal included: a hypervisor's other guests), from
    /proc/stat; None where there is none (macOS)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / hz


def others_cores(fn: Callable[[], T]) -> tuple[T, float | None]:
    """fn's result and how many cores other processes kept busy, on average, while it ran (the machine's busy CPU
    time less this process's own, over the wall time); None where the machine cannot tell."""
    before, own, start = busy_seconds(), os.times(), time.perf_counter()
    result = fn()
    after, own_after, wall = busy_seconds(), os.times(), time.perf_counter() - start
    if before is None or after is None or wall <= 0:
        return result, None
    mine = (own_after.user + own_after.system) - (own.user + own.system)
    return result, max(0.0, (after - before - mine) / wall)
