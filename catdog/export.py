"""Export a checkpoint: `python -m catdog.export ckpt_path=FILE format=onnx|torchscript [output=...]`.

The exported model takes uint8 images (N, C, H, W) and returns class probabilities (softmax included); the
preprocessing it needs (resolution, channels, classes, resize) is written beside it as `<output>.json`.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from catdog.errors import CatdogError
from catdog.inference import Probabilities, load_classifier, preprocessing
from catdog.io import write_json_atomic
from catdog.run.cli import guarded, run_entry

log = logging.getLogger(__name__)
FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}


def export_onnx(net: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """ONNX with a dynamic batch size; the TorchScript-based exporter (the dynamo one needs onnxscript)."""
    torch.onnx.export(
        net,
        (example,),
        str(path),
        input_names=["images"],
        output_names=["probabilities"],
        dynamic_axes={"images": {0: "batch"}, "probabilities": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )


def export_torchscript(net: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.jit.trace(net, example).save(str(path))


def metadata_path(model_path: Path) -> Path:
    """`model.onnx` -> `model.onnx.json`: ONNX and TorchScript exports of one checkpoint can sit together."""
    return model_path.with_name(model_path.name + ".json")


def export(ckpt_path: str, format: str = "onnx", output: str | None = None) -> Path:
    """Write the exported model and its preprocessing JSON; returns the model's path."""
    if format not in FORMATS:
        raise CatdogError(f"format={format}: must be one of {', '.join(FORMATS)}.")
    model = load_classifier(ckpt_path)
    path = Path(ckpt_path).with_suffix(FORMATS[format])
    if output:
        path = Path(output) / path.name if Path(output).is_dir() else Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    h = model.hparams
    example = torch.zeros(2, h.in_channels, h.resolution, h.resolution, dtype=torch.uint8)
    net = Probabilities(model).eval().requires_grad_(False)  # outputs a user can call .numpy() on
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", DeprecationWarning
        )  # both exporters are "legacy" in torch 2.9+, and work
        (export_onnx if format == "onnx" else export_torchscript)(net, example, path)
    meta = {"format": format, "model": path.name, "checkpoint": str(ckpt_path), **preprocessing(model)}
    if format == "onnx":
        meta["input"]["name"], meta["output"]["name"] = "images", "probabilities"
    write_json_atomic(metadata_path(path), meta)
    return path


def run(cfg: DictConfig) -> Path:
    path = export(cfg.ckpt_path, cfg.format, cfg.get("output"))
    print(f"Exported {cfg.ckpt_path} as {cfg.format} to {path}; preprocessing in {metadata_path(path)}")
    return path


@hydra.main(version_base="1.3", config_path="../configs", config_name="export")
def main(cfg: DictConfig) -> None:
    guarded(run, cfg)


if __name__ == "__main__":
    run_entry(main, "export")
