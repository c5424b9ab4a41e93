"""int8 ONNX: ONNX Runtime's own static quantization of a float export, calibrated on photos the model did not
train on (`python -m catdog.export ckpt_path=FILE format=onnx quantize=int8`).

Static, not dynamic: a CNN's time is in its convolutions, which dynamic quantization leaves in float (it covers
MatMul/Gemm and recurrent layers); static quantization measures each activation's range once, on calibration
photos, so convolutions run as int8 (QDQ nodes that onnxruntime fuses into integer kernels). Only Conv, Gemm and
MatMul are quantized: the softmax, the temperature and the flip-TTA log/mean stay float, so the probabilities keep
their precision and only the features carry int8 rounding.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from catdog.errors import CatdogError
from catdog.io import replace_atomic

QUANTIZED_OPS = ["Conv", "Gemm", "MatMul"]
CALIBRATION_BATCH = 32  # images per calibration step: the MinMax ranges do not depend on it, memory does


def calibration_photos(cfg: DictConfig, predictor) -> tuple[np.ndarray, str]:
    """Up to `cfg.calibration_photos` preprocessed images (N, H, W, C) uint8 and where they come from: the val
    split of the data the checkpoint was trained on (data.source=null), else every photo of data.source."""
    from catdog.data.split import SPLITS
    from catdog.evaluate import decoded_as_trained
    from catdog.held_out import training_data, training_splits

    n = cfg.calibration_photos
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise CatdogError(f"calibration_photos={n}: must be a positive number of photos, e.g. 512.")
    held_out = cfg.data.get("source") is None
    trained_on = training_data(cfg)
    arrays = decoded_as_trained(cfg, predictor, trained_on if held_out else None)
    indices, where = np.arange(len(arrays.labels)), f"all photos of {cfg.data.source}"
    if held_out:
        codes = training_splits(arrays, trained_on)  # type: ignore[arg-type]  # held_out: recorded
        indices, where = np.flatnonzero(codes == SPLITS.index("val")), f"the val split of {cfg.data.source}"
        if not len(indices):
            raise CatdogError(
                f"ckpt_path={cfg.ckpt_path}: its training data {cfg.data.source} has no val split to calibrate "
                "int8 on: give data.source=PATH, photos it did not train on."
            )
    # a seeded sample: the same photos (and so the same int8 model) on every export of this checkpoint
    chosen = np.sort(np.random.default_rng(0).permutation(indices)[:n])
    return np.asarray(arrays.images[chosen]), f"{len(chosen)} photos from {where}"


class CalibrationBatches(CalibrationDataReader):
    """The calibration photos as onnxruntime asks for them: feed dicts of NCHW batches, then None."""

    def __init__(self, images: np.ndarray, input_name: str):
        nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        self.feeds = iter(
            {input_name: nchw[i : i + CALIBRATION_BATCH]} for i in range(0, len(nchw), CALIBRATION_BATCH)
        )

    def get_next(self) -> dict | None:
        return next(self.feeds, None)


def quantize_int8(float_path: Path, int8_path: Path, images: np.ndarray, input_name: str) -> dict:
    """Write `int8_path`: the float ONNX at `float_path` quantized (QDQ, int8 per-channel weights, uint8
    activations, MinMax ranges on `images`, (N, H, W, C) uint8); returns the settings for the export JSON."""
    if not len(images):
        raise CatdogError("quantize=int8: no calibration photos; give data.source=PATH with some photos.")
    settings = {
        "tool": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "weights": "int8, per channel",
        "activations": "uint8, per tensor",
        "calibration_method": "MinMax",
        "quantized_ops": QUANTIZED_OPS,
    }
    with tempfile.TemporaryDirectory(prefix="catdog-quantize-") as tmp:
        # shape inference and graph cleanup first, as onnxruntime's quantization guide asks
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared))
        quantize_static(
            str(prepared),
            str(Path(tmp) / "int8.onnx"),
            CalibrationBatches(images, input_name),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTIZED_OPS,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        quantized = (Path(tmp) / "int8.onnx").read_bytes()
    # published whole or not at all, like every file catdog writes
    replace_atomic(int8_path, lambda f: f.write(quantized), binary=True)
    return settings
