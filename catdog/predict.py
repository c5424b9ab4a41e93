"""Predict with a trained checkpoint: `python -m catdog.predict ckpt_path=FILE inputs=PATH [output=FILE.csv]`.

PATH is one image, a folder (every file below it) or a zip/tar archive; no labels are needed. The CSV has one
row per file, `path,label,probability`, or `path,skipped,<reason>` for a file that is not a usable image.
From Python: `catdog.load("last.ckpt").predict(["a.jpg", array])`.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from catdog.checkpoint import Probabilities, load_classifier
from catdog.cli import guarded
from catdog.config import validate
from catdog.data.cache import replace_atomic
from catdog.data.decode import BadImage, decode_image
from catdog.data.sources import SourceReader, archive_kind, list_files, printable
from catdog.errors import CatdogError
from catdog.explain.gradcam import display_image, explanation_path, gradcam, overlay_png, resolve_layer
from catdog.models import ImageClassifier

log = logging.getLogger(__name__)


def array_bytes(image: np.ndarray) -> bytes:
    """An HxW or HxWxC uint8 RGB(A) array as an uncompressed BMP, for the very decoder files go through."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        got = f"{type(image).__name__} {getattr(image, 'dtype', '')}"
        raise CatdogError(f"predict: arrays must be uint8 numpy arrays (HxW or HxWxC RGB), got {got}.")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGR if image.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    elif image.ndim != 2:
        raise CatdogError(
            f"predict: an array of shape {image.shape} is not an image (HxW, or HxWxC with C in 1, 3, 4)."
        )
    if min(image.shape[:2]) < 1:
        raise CatdogError(f"predict: an array of shape {image.shape} has no pixels.")
    ok, encoded = cv2.imencode(".bmp", image)
    if not ok:
        raise CatdogError(f"predict: OpenCV could not take an array of shape {image.shape}.")
    return encoded.tobytes()


UNSURE = "unsure"


def check_min_confidence(value: float) -> float:
    if not 0 <= float(value) <= 1:
        raise CatdogError(f"min_confidence={value}: must be a probability in [0, 1] (0 never abstains).")
    return float(value)


class Predictor:
    """A trained classifier with the preprocessing from its checkpoint: files or arrays in, labels out.

    Probabilities are calibrated (the checkpoint's temperature); a top probability below `min_confidence`
    makes the label "unsure".
    """

    def __init__(self, model: ImageClassifier, min_confidence: float = 0.0):
        self.model = model.eval().cpu()
        self.net = Probabilities(self.model)
        self.classes: list[str] = list(model.hparams.classes)
        self.resolution: int = model.hparams.resolution
        self.channels: int = model.hparams.in_channels
        self.min_confidence = check_min_confidence(min_confidence)

    @classmethod
    def from_checkpoint(cls, ckpt_path: str | os.PathLike, min_confidence: float = 0.0) -> Predictor:
        return cls(load_classifier(ckpt_path), min_confidence)

    @property
    def temperature(self) -> float:
        return float(self.net.temperature)

    def decode(self, data: bytes) -> np.ndarray:
        """(resolution, resolution, channels) uint8, as the training images were made; BadImage if not."""
        return decode_image(data, self.resolution, self.channels)

    def image(self, item: str | os.PathLike | np.ndarray) -> np.ndarray:
        """The network input for a file path or an array; a CatdogError naming the file if it is unusable."""
        if isinstance(item, np.ndarray):
            return self.decode(array_bytes(item))
        try:
            return self.decode(Path(item).read_bytes())
        except (OSError, BadImage) as e:
            raise CatdogError(f"{item}: cannot be used as an image ({e}).") from e

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
        """Uncalibrated logits (N, classes): probabilities are softmax(logits / temperature)."""
        return self.net.logits(self.tensor(images)).numpy()

    def heatmaps(self, images: np.ndarray, layer: int | str | None = None) -> np.ndarray:
        """Grad-CAM heatmaps (N, H, W) in [0, 1] of the predicted class, for preprocessed images (N, H, W, C)."""
        return gradcam(self.net.net, self.tensor(images), layer).numpy()

    def explain(
        self, items: Sequence[str | os.PathLike | np.ndarray], layer: int | str | None = None
    ) -> list[np.ndarray]:
        """For each path or array: where the evidence for its predicted class lies, a (resolution, resolution)
        float32 heatmap in [0, 1] (Grad-CAM at `layer`, by default the last conv stage)."""
        items = list(items)
        if not items:
            return []
        return list(self.heatmaps(np.stack([self.image(item) for item in items]), layer))

    def predict(self, items: Sequence[str | os.PathLike | np.ndarray], batch_size: int = 256) -> list[dict]:
        """For each path or array: {"label", "probability", "probabilities": {class: p}}."""
        items, results = list(items), []
        for start in range(0, len(items), batch_size):
            images = np.stack([self.image(item) for item in items[start : start + batch_size]])
            for p in self.probabilities(images):
                results.append(self.describe(p))
        return results

    def describe(self, probs: np.ndarray) -> dict:
        best = int(probs.argmax())
        return {
            "label": self.classes[best] if probs[best] >= self.min_confidence else UNSURE,
            "probability": float(probs[best]),
            "probabilities": dict(zip(self.classes, map(float, probs), strict=True)),
        }


def list_inputs(inputs: str | os.PathLike) -> tuple[SourceReader, list[str], str]:
    """Every file of an image, a folder (recursively) or an archive: a reader, relative paths, a prefix."""
    path = Path(inputs).expanduser()
    kind = archive_kind(path) if path.is_file() else None
    if path.is_dir():
        reader, paths, prefix = (
            SourceReader(path, "dir"),
            [p for p, _, _ in list_files(path, "dir")],
            str(path),
        )
    elif kind:
        reader, paths, prefix = SourceReader(path, kind), [p for p, _, _ in list_files(path, kind)], ""
    elif path.is_file():
        reader, paths, prefix = SourceReader(path.parent, "dir"), [path.name], str(path.parent)
    else:
        raise CatdogError(
            f"inputs={inputs}: no such file or directory. Give an image, a folder or a .zip/.tar."
        )
    if not paths:
        raise CatdogError(
            f"inputs={inputs}: no files found. Give an image, a folder of images or a .zip/.tar."
        )
    return reader, paths, prefix


def write_explanations(
    predictor: Predictor,
    folder: Path,
    names: list[str],
    datas: list[bytes],
    images: list[np.ndarray],
    layer: int | str | None,
) -> None:
    """One Grad-CAM overlay PNG per decoded input, at `folder/<its relative path>.png`."""
    for name, data, image, heat in zip(names, datas, images, predictor.heatmaps(np.stack(images), layer)):
        path = explanation_path(folder, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        png = overlay_png(display_image(data, image), heat)
        replace_atomic(path, lambda f, png=png: f.write(png), binary=True)


def prediction_rows(
    predictor: Predictor,
    inputs: str,
    batch_size: int,
    explain_dir: Path | None = None,
    explain_layer: int | str | None = None,
) -> Iterator[tuple[str, str, str]]:
    """(path, label, probability) for every input file, or (path, "skipped", reason), a batch at a time;
    with `explain_dir`, a Grad-CAM overlay PNG of every decoded file there."""
    reader, paths, prefix = list_inputs(inputs)
    try:
        for start in range(0, len(paths), batch_size):
            shown = [
                printable(os.path.join(prefix, rel) if prefix else rel)
                for rel in paths[start : start + batch_size]
            ]
            rows, images, decoded, datas = [], [], [], []
            for i, name in enumerate(shown):
                try:
                    data = reader.read(paths[start + i])
                    images.append(predictor.decode(data))
                    decoded.append(i)
                    datas.append(data)
                    rows.append(None)
                except (OSError, KeyError, BadImage) as e:
                    rows.append((name, "skipped", str(e) or e.__class__.__name__))
            if images:
                for i, probs in zip(decoded, predictor.probabilities(np.stack(images)), strict=True):
                    d = predictor.describe(probs)
                    rows[i] = (shown[i], d["label"], f"{d['probability']:.6f}")
                if explain_dir is not None:
                    names = [paths[start + i] for i in decoded]
                    write_explanations(predictor, explain_dir, names, datas, images, explain_layer)
            yield from rows
    finally:
        reader.close()


def predict_to_csv(
    ckpt_path: str,
    inputs: str,
    output: str,
    batch_size: int = 256,
    min_confidence: float = 0.0,
    explain: bool = False,
    explain_layer: int | str | None = None,
) -> Counter:
    """Write the predictions CSV (whole, or not at all); returns the count of each label and of "skipped".
    With `explain`, Grad-CAM overlays go to `explanations/` beside the CSV."""
    predictor = Predictor.from_checkpoint(ckpt_path, min_confidence)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    explain_dir = out.parent / "explanations" if explain else None
    if explain:
        resolve_layer(predictor.net.net, explain_layer)
    counts: Counter = Counter()

    def write(f) -> None:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "probability"])
        for row in prediction_rows(predictor, inputs, batch_size, explain_dir, explain_layer):
            writer.writerow(row)
            counts[row[1]] += 1

    replace_atomic(out, write, binary=False)
    return counts


def run(cfg: DictConfig) -> Counter:
    validate(cfg)
    if cfg.get("inputs") is None:
        raise CatdogError("inputs is not set: give inputs=PATH (an image, a folder or a .zip of images).")
    explain = bool(cfg.get("explain", False))
    counts = predict_to_csv(
        cfg.ckpt_path,
        str(cfg.inputs),
        str(cfg.output),
        cfg.batch_size,
        min_confidence=cfg.get("min_confidence", 0.0),
        explain=explain,
        explain_layer=cfg.get("explain_layer"),
    )
    predicted = ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items()) if k != "skipped") or "none"
    print(f"Predicted {sum(counts.values()) - counts['skipped']:,} files ({predicted}); "
          f"skipped {counts['skipped']:,}. Written to {cfg.output}")  # fmt: skip
    if explain:
        print(f"Grad-CAM overlays in {Path(cfg.output).parent / 'explanations'}")
    return counts


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    guarded(run, cfg)


if __name__ == "__main__":
    main()
