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


class Predictor:
    """A trained classifier with the preprocessing from its checkpoint: files or arrays in, labels out."""

    def __init__(self, model: ImageClassifier):
        self.model = model.eval().cpu()
        self.net = Probabilities(self.model)
        self.classes: list[str] = list(model.hparams.classes)
        self.resolution: int = model.hparams.resolution
        self.channels: int = model.hparams.in_channels
        # ImageClassifier defaults it to false: checkpoints from before data.fast_decode get the full-size decode
        self.fast_decode: bool = bool(model.hparams.fast_decode)

    @classmethod
    def from_checkpoint(cls, ckpt_path: str | os.PathLike) -> Predictor:
        return cls(load_classifier(ckpt_path))

    def decode(self, data: bytes) -> np.ndarray:
        """(resolution, resolution, channels) uint8, as the training images were made; BadImage if not."""
        return decode_image(data, self.resolution, self.channels, fast_decode=self.fast_decode)

    def image(self, item: str | os.PathLike | np.ndarray) -> np.ndarray:
        """The network input for a file path or an array; a CatdogError naming the file if it is unusable."""
        if isinstance(item, np.ndarray):
            return self.decode(array_bytes(item))
        try:
            return self.decode(Path(item).read_bytes())
        except (OSError, BadImage) as e:
            raise CatdogError(f"{item}: cannot be used as an image ({e}).") from e

    @torch.inference_mode()
    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes) for preprocessed images (N, H, W, C) uint8."""
        copy = np.array(images, dtype=np.uint8)  # cached arrays are read-only memory maps
        x = torch.from_numpy(copy).permute(0, 3, 1, 2)
        return self.net(x).numpy()

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
            "label": self.classes[best],
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


def prediction_rows(predictor: Predictor, inputs: str, batch_size: int) -> Iterator[tuple[str, str, str]]:
    """(path, label, probability) for every input file, or (path, "skipped", reason), a batch at a time."""
    reader, paths, prefix = list_inputs(inputs)
    try:
        for start in range(0, len(paths), batch_size):
            shown = [
                printable(os.path.join(prefix, rel) if prefix else rel)
                for rel in paths[start : start + batch_size]
            ]
            rows, images, decoded = [], [], []
            for i, name in enumerate(shown):
                try:
                    images.append(predictor.decode(reader.read(paths[start + i])))
                    decoded.append(i)
                    rows.append(None)
                except (OSError, KeyError, BadImage) as e:
                    rows.append((name, "skipped", str(e) or e.__class__.__name__))
            if images:
                for i, probs in zip(decoded, predictor.probabilities(np.stack(images)), strict=True):
                    d = predictor.describe(probs)
                    rows[i] = (shown[i], d["label"], f"{d['probability']:.6f}")
            yield from rows
    finally:
        reader.close()


def predict_to_csv(ckpt_path: str, inputs: str, output: str, batch_size: int = 256) -> Counter:
    """Write the predictions CSV (whole, or not at all); returns the count of each label and of "skipped"."""
    predictor = Predictor.from_checkpoint(ckpt_path)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()

    def write(f) -> None:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "probability"])
        for row in prediction_rows(predictor, inputs, batch_size):
            writer.writerow(row)
            counts[row[1]] += 1

    replace_atomic(out, write, binary=False)
    return counts


def run(cfg: DictConfig) -> Counter:
    validate(cfg)
    if cfg.get("inputs") is None:
        raise CatdogError("inputs is not set: give inputs=PATH (an image, a folder or a .zip of images).")
    counts = predict_to_csv(cfg.ckpt_path, str(cfg.inputs), str(cfg.output), cfg.batch_size)
    predicted = ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items()) if k != "skipped") or "none"
    print(f"Predicted {sum(counts.values()) - counts['skipped']:,} files ({predicted}); "
          f"skipped {counts['skipped']:,}. Written to {cfg.output}")  # fmt: skip
    return counts


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    guarded(run, cfg)


if __name__ == "__main__":
    main()
