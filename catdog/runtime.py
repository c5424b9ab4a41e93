"""Classify photos with an exported model and no torch: `catdog.runtime.load("model.onnx").predict(items)`.

Imports numpy, OpenCV and (on `load`) onnxruntime only, so a deployment installs tens of MB instead of torch and
Lightning. `BasePredictor` is the torch-free half of every predictor: decoding (catdog.data.decode, the rule
training used), the labels, `min_confidence`; `catdog.inference.Predictor` adds the checkpoint's torch network to
it, `OnnxPredictor` an exported `.onnx` with the JSON `catdog.export` writes beside it. Both return the same
`{"label", "probability", "probabilities"}` per item.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from catdog.batching import batches
from catdog.data.decode import BadImage, decode_image
from catdog.errors import CatdogError

UNSURE = "unsure"
Item = str | os.PathLike | np.ndarray | bytes


def metadata_path(model_path: str | os.PathLike) -> Path:
    """`model.onnx` -> `model.onnx.json`: the exports of one checkpoint (and their JSONs) can sit together."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


def probability_columns(classes: Sequence[str]) -> list[str]:
    """`p_<class>` per class, in the model's order: the columns of every class's probability in predict's CSV and
    in predictions_*.csv."""
    return [f"p_{c}" for c in classes]


def probability_cells(probs: Sequence[float] | np.ndarray) -> list[str]:
    """The cells under probability_columns, 6 decimals as the `probability` column."""
    return [f"{float(p):.6f}" for p in probs]


def check_min_confidence(value: float) -> float:
    if not 0 <= float(value) <= 1:
        raise CatdogError(f"min_confidence={value}: must be a probability in [0, 1] (0 never abstains).")
    return float(value)


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


class BasePredictor:
    """Files, bytes or arrays in, labels out, decoded as the model was trained; subclasses give `probabilities`
    (calibrated, (N, classes), for preprocessed images (N, H, W, C) uint8) and `temperature`.

    A top probability below `min_confidence` makes the label "unsure".
    """

    classes: list[str]
    resolution: int
    channels: int
    fast_decode: bool
    resize: str
    min_confidence: float
    temperature: float
    explains = False  # Grad-CAM needs the torch network's gradients

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def decode(self, data: bytes) -> np.ndarray:
        """(resolution, resolution, channels) uint8, as the training images were made; BadImage if not."""
        return decode_image(
            data, self.resolution, self.channels, fast_decode=self.fast_decode, resize=self.resize
        )

    def image(self, item: Item) -> np.ndarray:
        """The network input for a file path, an encoded file's bytes or an array; a CatdogError if unusable."""
        if isinstance(item, np.ndarray):
            return self.decode(array_bytes(item))
        if isinstance(item, (bytes, bytearray, memoryview)):
            try:
                return self.decode(bytes(item))
            except BadImage as e:
                raise CatdogError(f"{len(item):,} bytes: cannot be used as an image ({e}).") from e
        try:
            return self.decode(Path(item).read_bytes())
        except (OSError, BadImage) as e:
            raise CatdogError(f"{item}: cannot be used as an image ({e}).") from e

    def predict(self, items: Sequence[Item], batch_size: int = 256) -> list[dict]:
        """For each path, bytes or array: {"label", "probability", "probabilities": {class: p}}."""
        items, results = list(items), []
        for b in batches(len(items), batch_size):
            images = np.stack([self.image(item) for item in items[b]])
            results += [self.describe(p) for p in self.probabilities(images)]
        return results

    def describe(self, probs: np.ndarray) -> dict:
        best = int(probs.argmax())
        return {
            "label": self.classes[best] if probs[best] >= self.min_confidence else UNSURE,
            "probability": float(probs[best]),
            "probabilities": dict(zip(self.classes, map(float, probs), strict=True)),
        }


def read_metadata(path: Path) -> dict:
    """The export JSON beside `path`; one clear message if it is missing or not catdog's."""
    meta_path = metadata_path(path)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        for key in ("classes", "input", "output", "preprocess", "temperature"):
            meta[key]  # noqa: B018 (a KeyError names the missing key)
        meta["preprocess"]["arguments"]["resolution"]  # noqa: B018
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CatdogError(
            f"ckpt_path={path}: its preprocessing {meta_path} is missing or unreadable ({e.__class__.__name__}: "
            f"{e}). Keep the JSON that `python -m catdog.export` wrote beside the model, or export again."
        ) from e
    return meta


class OnnxPredictor(BasePredictor):
    """An exported ONNX model (float or int8) and its JSON, run by onnxruntime on the CPU."""

    def __init__(self, path: str | os.PathLike, min_confidence: float = 0.0, threads: int = 0):
        import onnxruntime as ort

        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise CatdogError(
                f"ckpt_path={self.path}: no such file. Give a .ckpt from train.py or an .onnx from catdog.export."
            )
        self.meta = read_metadata(self.path)
        arguments = self.meta["preprocess"]["arguments"]
        self.classes = list(self.meta["classes"])
        self.resolution, self.channels = int(arguments["resolution"]), int(arguments["channels"])
        self.fast_decode = bool(arguments.get("fast_decode", False))
        self.resize = str(arguments.get("resize", "squash"))  # exports from before data.resize squash
        self.temperature = float(self.meta["temperature"])
        self.min_confidence = check_min_confidence(min_confidence)
        self.input = self.meta["input"].get("name", "images")
        self.output = self.meta["output"].get("name", "probabilities")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default, one per core
        options.log_severity_level = 3  # errors only: its warnings about unused initializers are noise here
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            first = (str(e).strip().splitlines() or [repr(e)])[0]
            raise CatdogError(
                f"ckpt_path={self.path}: onnxruntime cannot load it ({first}). Export it again with "
                "`python -m catdog.export`."
            ) from e

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities (N, classes) for preprocessed images (N, H, W, C) uint8."""
        x = np.ascontiguousarray(np.asarray(images, dtype=np.uint8).transpose(0, 3, 1, 2))
        return self.session.run([self.output], {self.input: x})[0]


def load(path: str | os.PathLike, min_confidence: float = 0.0) -> OnnxPredictor:
    """An exported `.onnx` (with its `.onnx.json`) as a predictor: `.predict(items)` as `catdog.load` gives."""
    return OnnxPredictor(path, min_confidence)
