"""Export a checkpoint: `python -m catdog.export ckpt_path=FILE format=onnx|pt2 [quantize=int8] [output=...]`.

The exported model takes uint8 images (N, C, H, W) and returns class probabilities (softmax included); the
preprocessing it needs (resolution, channels, classes, data.resize) is written beside it as `<output>.json`. Both
formats go through `torch.export`, PyTorch's current capture of a model as a graph: ONNX with the dynamo exporter
(`torch.onnx.export(..., dynamo=True)`), and `.pt2`, the ExportedProgram itself (TorchScript, which the former
`format=torchscript` wrote, is deprecated in PyTorch). `quantize=int8` adds `<name>.int8.onnx` (catdog.quantize).
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from catdog.checkpoint import load_classifier
from catdog.errors import CatdogError
from catdog.inference import Predictor, Probabilities
from catdog.io import write_json_atomic
from catdog.models.classifier import ImageClassifier
from catdog.preprocessing import describe
from catdog.runtime import metadata_path
from catdog.shell.cli import run_entry

__all__ = ["export", "metadata_path"]
log = logging.getLogger(__name__)
FORMATS = {"onnx": ".onnx", "pt2": ".pt2"}
QUANTIZE = ("int8",)
# the batch size stays free in both formats: one export serves a single photo and a batch of 256
BATCH = torch.export.Dim("batch", min=1, max=65536)


@contextmanager
def quiet_exporters():
    """The exporters' and the quantizer's chatter (warnings; torch.onnx's log of the torchvision ops it cannot
    register without torchvision; onnxscript's and onnxruntime's INFO lines about each graph rewrite, ~70 for a
    small net) says nothing about this model; errors still raise and are logged."""
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
        onnx_log.setLevel(level)


def export_onnx(net: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """ONNX through torch.export (the dynamo exporter, onnxscript), weights inside the one file."""
    torch.onnx.export(
        net,
        (example,),
        str(path),
        input_names=["images"],
        output_names=["probabilities"],
        dynamic_shapes=({0: BATCH},),
        dynamo=True,
        external_data=False,
        verbose=False,
    )


def export_pt2(net: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """The ExportedProgram: `torch.export.load(path).module()(images)` runs it with torch alone (no catdog)."""
    torch.export.save(torch.export.export(net, (example,), dynamic_shapes=({0: BATCH},)), str(path))


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
        "preprocess": describe(h.resolution, h.in_channels, bool(h.fast_decode), h.resize),
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


def check_request(format: str, quantize: str | None) -> None:
    if format == "torchscript":
        raise CatdogError(
            "format=torchscript: TorchScript is deprecated in PyTorch; give format=pt2 (a torch.export "
            "ExportedProgram: torch.export.load(path).module()(images)) or format=onnx."
        )
    if format not in FORMATS:
        raise CatdogError(f"format={format}: must be one of {', '.join(FORMATS)}.")
    if quantize is not None and quantize not in QUANTIZE:
        raise CatdogError(f"quantize={quantize}: must be null or {', '.join(QUANTIZE)}.")
    if quantize and format != "onnx":
        raise CatdogError(f"quantize={quantize} needs format=onnx (ONNX Runtime quantizes it).")


def int8_path(path: Path) -> Path:
    """`model.onnx` -> `model.int8.onnx`, beside the float file."""
    return path.with_name(f"{path.stem}.int8.onnx")


def export(
    ckpt_path: str,
    format: str = "onnx",
    output: str | None = None,
    quantize: str | None = None,
    calibration: np.ndarray | None = None,
    calibration_source: str = "",
) -> Path:
    """Write the exported model and its preprocessing JSON; returns the model's path (the int8 file's with
    `quantize="int8"`, calibrated on `calibration`, preprocessed images (N, H, W, C) uint8, written beside the
    float file, each with its own JSON)."""
    check_request(format, quantize)
    model = load_classifier(ckpt_path)
    path = Path(ckpt_path).with_suffix(FORMATS[format])
    if output:
        path = Path(output) / path.name if Path(output).is_dir() else Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    h = model.hparams
    example = torch.zeros(2, h.in_channels, h.resolution, h.resolution, dtype=torch.uint8)
    net = Probabilities(model).eval().requires_grad_(False)  # outputs a user can call .numpy() on
    with torch.no_grad(), quiet_exporters():
        (export_onnx if format == "onnx" else export_pt2)(net, example, path)
    meta = {
        "format": format,
        "model": path.name,
        "exporter": f"torch {torch.__version__.split('+')[0]} torch.export"
        + (" + torch.onnx (dynamo)" if format == "onnx" else ""),
        "checkpoint": str(ckpt_path),
        **preprocessing(model),
    }
    if format == "onnx":
        meta["input"]["name"], meta["output"]["name"] = "images", "probabilities"
    write_json_atomic(metadata_path(path), meta)
    if not quantize:
        return path
    from catdog.quantize import quantize_int8

    if calibration is None:
        raise CatdogError("quantize=int8 needs calibration photos (catdog.quantize.calibration_photos).")
    quantized = int8_path(path)
    with quiet_exporters():
        settings = quantize_int8(path, quantized, calibration, meta["input"]["name"])
    settings["calibration"] = calibration_source or f"{len(calibration)} photos"
    int8_meta = {**meta, "model": quantized.name, "float_model": path.name, "quantization": settings}
    write_json_atomic(metadata_path(quantized), int8_meta)
    return quantized


def run(cfg: DictConfig) -> Path:
    quantize = cfg.get("quantize")
    check_request(cfg.format, quantize)
    photos, source = None, ""
    if quantize:
        from catdog.quantize import calibration_photos

        photos, source = calibration_photos(cfg, Predictor.from_checkpoint(cfg.ckpt_path))
    path = export(cfg.ckpt_path, cfg.format, cfg.get("output"), quantize, photos, source)
    what = (
        f"{cfg.format} {quantize} (calibrated on {source}; the float model beside it)"
        if quantize
        else cfg.format
    )
    print(f"Exported {cfg.ckpt_path} as {what} to {path}; preprocessing in {metadata_path(path)}")
    return path


if __name__ == "__main__":
    run_entry(run, "export", usage=__doc__)
