"""Exports give the checkpoint's probabilities (to 1e-4), with their preprocessing in a JSON beside them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
from helpers import ROOT, make_image, train_checkpoint, write_class_folders

from catdog.errors import CatdogError
from catdog.export import export, metadata_path
from catdog.inference import Predictor

PRESET_NET = {
    "padding": "same",
    "convs_per_stage": 2,
    "batchnorm": True,
    "head": "gap",
    "hidden": [],
    "normalize": True,
    "mean": [0.45],
    "std": [0.25],
    "tta": True,
    "channels_last": True,
}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    # the fast/best presets' architecture: double 'same' convs with batch norm, a global-average-pooling head,
    # inputs normalized inside the net, channels_last weights and flip TTA
    return train_checkpoint(
        write_class_folders(tmp / "PetImages", per_class=12), tmp, channels=1, **PRESET_NET
    )


def run_exported(path, fmt: str, x: np.ndarray) -> np.ndarray:
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["probabilities"], {"images": x})[0]
    return torch.jit.load(str(path))(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_the_checkpoint(ckpt, tmp_path, fmt):
    path = export(str(ckpt), fmt, str(tmp_path / f"model.{fmt}"))
    predictor = Predictor.from_checkpoint(ckpt)
    images = np.stack(
        [predictor.image(make_image(i % 2, seed=i, size=(50, 40))) for i in range(5)]
    )  # batch 5 != 2
    expected = predictor.probabilities(images)
    got = run_exported(path, fmt, np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    assert got.shape == (5, 2)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # the exported net is the preset's: trained batch-norm statistics, no dense layer after the pooling
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert any(k.endswith("running_mean") and v.abs().sum() > 0 for k, v in state.items())
    assert [tuple(v.shape) for k, v in state.items() if v.ndim == 2] == [(2, 8)]
    meta = json.loads(metadata_path(path).read_text())
    assert (meta["resolution"], meta["channels"], meta["classes"]) == (16, 1, ["Cat", "Dog"])
    assert meta["input"]["dtype"] == "uint8" and meta["input"]["layout"] == "NCHW"
    assert meta["format"] == fmt and meta["tta"] is True and "probabilities" in meta["output"]["meaning"]


def test_export_cli_writes_beside_the_checkpoint(ckpt, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "catdog.export",
            f"ckpt_path={ckpt}",
            "format=onnx",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ckpt.with_suffix(".onnx").is_file() and ckpt.with_name(ckpt.stem + ".onnx.json").is_file()


def test_unknown_format_is_one_clear_error(ckpt):
    with pytest.raises(CatdogError, match="format=tflite: must be one of onnx, torchscript"):
        export(str(ckpt), "tflite")


def test_output_naming_a_folder_writes_inside_it(ckpt, tmp_path):
    path = export(str(ckpt), "onnx", str(tmp_path))
    assert path == tmp_path / ckpt.with_suffix(".onnx").name and path.is_file()
    assert metadata_path(path).is_file()
