"""A trained checkpoint on its own: the network as probabilities, and the preprocessing it was trained with.

Every entry point that uses a trained model (evaluate, predict, export) loads it here, so they all read the
resolution, channels and class names from the checkpoint and compute the same probabilities.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

import catdog
from catdog.errors import CatdogError
from catdog.models import ImageClassifier
from catdog.models.classifier import flip_tta_probabilities

log = logging.getLogger(__name__)


def _existing(path: str | Path | None) -> Path:
    if path is None or str(path) in ("", "None"):
        raise CatdogError("ckpt_path is not set: give ckpt_path=FILE, e.g. a run's checkpoints/last.ckpt.")
    path = Path(path).expanduser()
    if not path.is_file():
        raise CatdogError(
            f"ckpt_path={path}: no such file. Give a .ckpt written by train.py (in <run>/checkpoints/)."
        )
    return path


def _unreadable(path: Path, e: Exception) -> CatdogError:
    unpickling = isinstance(e, pickle.UnpicklingError) or "Weights only load failed" in str(e)
    detail = "not a PyTorch checkpoint" if unpickling else (str(e).strip().splitlines() or [repr(e)])[0]
    return CatdogError(
        f"ckpt_path={path}: cannot be read as a catdog checkpoint ({detail}). "
        "Give a .ckpt written by train.py; the file may be incomplete or from another program."
    )


UNREADABLE = (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError,
              zipfile.BadZipFile)  # fmt: skip


def load_classifier(path: str | Path | None) -> ImageClassifier:
    """The classifier of a checkpoint, on the CPU in eval mode; one clear message if the file is unusable."""
    path = _existing(path)
    read_checkpoint(path)  # checked first (memory-mapped, cheap): one message for any file that is not ours
    try:
        model = ImageClassifier.load_from_checkpoint(path, map_location="cpu", compile=False)
    except UNREADABLE as e:
        raise _unreadable(path, e) from e
    return model.eval()


def read_checkpoint(path: str | Path) -> dict:
    """The raw contents of a training checkpoint (tensors memory-mapped); one clear message if unusable."""
    path = _existing(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        if not isinstance(checkpoint, dict) or "classes" not in checkpoint.get("hyper_parameters", {}):
            raise KeyError("no hyper_parameters.classes")
    except UNREADABLE as e:
        raise _unreadable(path, e) from e
    return checkpoint


def check_classes(
    data_classes: list[str],
    model_classes: list[str],
    source: str,
    ckpt_path: str,
    fix: str = "Evaluate on images of the classes the checkpoint knows.",
) -> None:
    """Labels are class indices in sorted name order: the data needs as many classes as the checkpoint."""
    if len(data_classes) != len(model_classes):
        raise CatdogError(
            f"data.source={source} has {len(data_classes)} classes ({', '.join(data_classes)}), but "
            f"ckpt_path={ckpt_path} was trained on {len(model_classes)} ({', '.join(model_classes)}). "
            f"{fix}"
        )
    if [c.lower() for c in data_classes] != [c.lower() for c in model_classes]:
        log.warning("Class names differ: data %s, checkpoint %s; comparing them in sorted order.",
                    data_classes, model_classes)  # fmt: skip


class Probabilities(nn.Module):
    """uint8 images (N, C, H, W) in, class probabilities out: what predict returns and what export writes.

    Holds the bare network (a LightningModule cannot be traced outside a Trainer) and computes what the
    classifier's `predict_logits` does (with tta, the mean of the image's and its mirror's probabilities),
    divided by the checkpoint's temperature: calibrated probabilities.
    """

    def __init__(self, model: ImageClassifier):
        super().__init__()
        self.net = model.net
        self.tta = bool(model.hparams.tta)
        self.register_buffer("temperature", model.temperature.detach().clone().float())

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Uncalibrated logits (with tta, log-probabilities, which softmax maps back to the same probabilities)."""
        return flip_tta_probabilities(self.net, x).clamp_min(1e-12).log() if self.tta else self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.logits(x) / self.temperature).softmax(1)


def preprocessing(model: ImageClassifier) -> dict:
    """How to turn a photo into the network's input, as stored in the checkpoint (written beside exports)."""
    h = model.hparams
    return {
        "resolution": h.resolution,
        "channels": h.in_channels,
        "color": "RGB" if h.in_channels == 3 else "grayscale",
        "classes": list(h.classes),
        "resize": "OpenCV cv2.resize to resolution x resolution (aspect ratio not kept): "
        "INTER_AREA when both sides shrink, else INTER_LINEAR",
        "input": {
            "dtype": "uint8",
            "layout": "NCHW",
            "shape": ["batch", h.in_channels, h.resolution, h.resolution],
            "range": "0-255",
        },  # fmt: skip
        "normalisation": {
            "inside_model": True,
            "formula": "(x / 255 - mean) / std",
            "mean": list(h.mean) if h.mean else None,
            "std": list(h.std) if h.std else None,
        },
        "output": {
            "meaning": "calibrated probabilities, softmax(logits / temperature), one per class in `classes` order",
            "dtype": "float32",
        },
        "temperature": float(model.temperature),
        "tta": bool(h.tta),
        "catdog_version": catdog.__version__,
    }
