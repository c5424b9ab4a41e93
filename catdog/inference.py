"""A trained checkpoint as a predictor: load it, preprocess as it was trained, return probabilities.

Every entry point that uses a trained model (evaluate, predict, export, `catdog.load`) loads it here, so they
all read the resolution, channels and class names from the checkpoint and compute the same probabilities.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from torch import nn

from catdog.errors import CatdogError
from catdog.explain.gradcam import gradcam
from catdog.models.classifier import ImageClassifier, flip_tta_probabilities, with_temperature
from catdog.preprocessing import describe
from catdog.runtime import BasePredictor, Item, check_min_confidence

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


UNREADABLE = (
    OSError,
    RuntimeError,
    EOFError,
    KeyError,
    TypeError,
    ValueError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
)


def model_arguments(hparams: dict) -> dict:
    """A checkpoint's hyperparameters as ImageClassifier's arguments, for checkpoints of every catdog version."""
    args = dict(hparams)
    # catdog 0.2 nested the network's keys under `net` (model.net.*); 0.1 and 0.3 keep them at the top (model.*)
    args.update(args.pop("net", None) or {})
    return args


def load_classifier(path: str | Path | None) -> ImageClassifier:
    """The classifier of a checkpoint, on the CPU in eval mode; one clear message if the file is unusable."""
    path = _existing(path)
    checkpoint = read_checkpoint(path)
    try:
        model = ImageClassifier(**{**model_arguments(checkpoint["hyper_parameters"]), "compile": False})
        model.load_state_dict(with_temperature(checkpoint["state_dict"]))
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
        log.warning(
            "Class names differ: data %s, checkpoint %s; comparing them in sorted order.",
            data_classes,
            model_classes,
        )


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
    """How to turn a photo into the network's input, as stored in the checkpoint (written beside exports).

    `preprocess` is the whole rule catdog trains, evaluates and predicts with (catdog.preprocessing): a client
    that follows its words or its Python lines feeds the network the very pixels catdog does.
    """
    h = model.hparams
    return {
        "resolution": h.resolution,
        "channels": h.in_channels,
        "color": "RGB" if h.in_channels == 3 else "grayscale",
        "classes": list(h.classes),
        "preprocess": describe(h.resolution, h.in_channels, bool(h.fast_decode)),
        "input": {
            "dtype": "uint8",
            "layout": "NCHW",
            "shape": ["batch", h.in_channels, h.resolution, h.resolution],
            "range": "0-255",
        },
        "normalize": {
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
        "catdog_version": version("catdog"),
    }


class Predictor(BasePredictor):
    """A trained classifier with the preprocessing from its checkpoint: files, bytes or arrays in, labels out
    (decoding and labels are catdog.runtime's BasePredictor, which the ONNX runtime shares).

    Probabilities are calibrated (the checkpoint's temperature); a top probability below `min_confidence`
    makes the label "unsure".
    """

    def __init__(self, model: ImageClassifier, min_confidence: float = 0.0):
        self.model = model.eval().cpu()
        self.net = Probabilities(self.model)
        self.classes: list[str] = list(model.hparams.classes)
        self.resolution: int = model.hparams.resolution
        self.channels: int = model.hparams.in_channels
        # ImageClassifier defaults it to false: checkpoints from before data.fast_decode get the full-size decode
        self.fast_decode: bool = bool(model.hparams.fast_decode)
        self.min_confidence = check_min_confidence(min_confidence)

    explains = True

    @classmethod
    def from_checkpoint(cls, ckpt_path: str | os.PathLike, min_confidence: float = 0.0) -> Predictor:
        return cls(load_classifier(ckpt_path), min_confidence)

    @property
    def temperature(self) -> float:
        return float(self.net.temperature)

    @staticmethod
    def tensor(images: np.ndarray) -> torch.Tensor:
        """Preprocessed images (N, H, W, C) uint8 as the network's input (N, C, H, W)."""
        copy = np.array(images, dtype=np.uint8)  # cached arrays are read-only memory maps
        return torch.from_numpy(copy).permute(0, 3, 1, 2)

    @torch.inference_mode()
    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities (N, classes) for preprocessed images (N, H, W, C) uint8."""
        return self.net(self.tensor(images)).numpy()

    @torch.inference_mode()
    def logits(self, images: np.ndarray) -> np.ndarray:
        """Uncalibrated logits (N, classes): `calibrated(logits)` are the probabilities."""
        return self.net.logits(self.tensor(images)).numpy()

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        """softmax(logits / temperature): what `probabilities` returns, from logits already computed."""
        return torch.from_numpy(logits / self.temperature).softmax(1).numpy()

    def heatmaps(self, images: np.ndarray, layer: int | str | None = None) -> np.ndarray:
        """Grad-CAM heatmaps (N, H, W) in [0, 1] of the predicted class, for preprocessed images (N, H, W, C)."""
        return gradcam(self.net.net, self.tensor(images), layer).numpy()

    def explain(self, items: Sequence[Item], layer: int | str | None = None) -> list[np.ndarray]:
        """For each path, bytes or array: where the evidence for its predicted class lies, a (resolution, resolution)
        float32 heatmap in [0, 1] (Grad-CAM at `layer`, by default the last conv stage)."""
        items = list(items)
        if not items:
            return []
        return list(self.heatmaps(np.stack([self.image(item) for item in items]), layer))
