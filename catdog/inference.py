"""A trained checkpoint as a predictor: preprocess as it was trained, return probabilities, explain them.

Every entry point that uses a trained model (evaluate, predict, export, `catdog.load`) loads it here or through
catdog.checkpoint, so they all read the resolution, channels and class names from the checkpoint and compute the
same probabilities.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from catdog.checkpoint import load_classifier
from catdog.explain.gradcam import gradcam
from catdog.models.classifier import ImageClassifier, flip_tta_probabilities
from catdog.run.hardware import resolve_device
from catdog.runtime import BasePredictor, Item, check_min_confidence


class Probabilities(nn.Module):
    """uint8 images (N, C, H, W) in, class probabilities out: what predict returns and what export writes.

    Holds the bare network (a LightningModule cannot be traced outside a Trainer) and computes what the
    classifier's `predict_logits` does (with tta, the mean of the image's and its mirror's probabilities),
    divided by the checkpoint's temperature: calibrated probabilities.
    """

    temperature: torch.Tensor  # a buffer, declared for the type checker

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


class Predictor(BasePredictor):
    """A trained classifier with the preprocessing from its checkpoint: files, bytes or arrays in, labels out
    (decoding and labels are catdog.runtime's BasePredictor, which the ONNX runtime shares).

    Probabilities are calibrated (the checkpoint's temperature); a top probability below `min_confidence`
    makes the label "unsure". The network runs in float32 on `device`: cpu, cuda, or auto, the GPU where torch sees
    one (on a GPU machine, the CPU took 3.6 of a `best` run's 6.6 minutes for its robustness report); the arrays in
    and out stay on the CPU.
    """

    def __init__(self, model: ImageClassifier, min_confidence: float = 0.0, device: str = "cpu"):
        self.device = torch.device(resolve_device(device))
        self.model = model.eval().to(self.device)
        self.net = Probabilities(self.model)
        self.classes: list[str] = list(model.hparams.classes)
        self.resolution: int = model.hparams.resolution
        self.channels: int = model.hparams.in_channels
        # ImageClassifier defaults it to false: checkpoints from before data.fast_decode get the full-size decode
        self.fast_decode: bool = bool(model.hparams.fast_decode)
        self.resize: str = model.hparams.resize  # squash for checkpoints from before data.resize, as above
        self.min_confidence = check_min_confidence(min_confidence)

    explains = True

    @classmethod
    def from_checkpoint(
        cls, ckpt_path: str | os.PathLike, min_confidence: float = 0.0, device: str = "cpu"
    ) -> Predictor:
        return cls(load_classifier(ckpt_path), min_confidence, device)

    @property
    def temperature(self) -> float:  # type: ignore[override]  # BasePredictor's plain attribute, read-only here
        return float(self.net.temperature)

    def tensor(self, images: np.ndarray) -> torch.Tensor:
        """Preprocessed images (N, H, W, C) uint8 as the network's input (N, C, H, W) on its device."""
        copy = np.array(images, dtype=np.uint8)  # cached arrays are read-only memory maps
        return torch.from_numpy(copy).to(self.device).permute(0, 3, 1, 2)

    @torch.inference_mode()
    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities (N, classes) for preprocessed images (N, H, W, C) uint8."""
        return self.net(self.tensor(images)).cpu().numpy()

    @torch.inference_mode()
    def logits(self, images: np.ndarray) -> np.ndarray:
        """Uncalibrated logits (N, classes): `calibrated(logits)` are the probabilities."""
        return self.net.logits(self.tensor(images)).cpu().numpy()

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        """softmax(logits / temperature): what `probabilities` returns, from logits already computed."""
        return torch.from_numpy(logits / self.temperature).softmax(1).numpy()

    def heatmaps(self, images: np.ndarray, layer: int | str | None = None) -> np.ndarray:
        """Grad-CAM heatmaps (N, H, W) in [0, 1] of the predicted class, for preprocessed images (N, H, W, C)."""
        return gradcam(self.net.net, self.tensor(images), layer).cpu().numpy()

    def explain(self, items: Sequence[Item], layer: int | str | None = None) -> list[np.ndarray]:
        """For each path, bytes or array: where the evidence for its predicted class lies, a (resolution, resolution)
        float32 heatmap in [0, 1] (Grad-CAM at `layer`, by default the last conv stage)."""
        items = list(items)
        if not items:
            return []
        return list(self.heatmaps(np.stack([self.image(item) for item in items]), layer))
