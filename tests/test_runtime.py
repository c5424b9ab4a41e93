"""catdog.runtime: an exported model classifies photos as the checkpoint does, in a process without torch."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from helpers import ROOT, make_image, run_module, train_checkpoint, write_class_folders

import catdog
from catdog.errors import CatdogError
from catdog.export import export
from catdog.runtime import OnnxPredictor, metadata_path

HEAVY = ("torch", "pytorch_lightning", "lightning", "lightning_fabric", "torchmetrics", "hydra", "omegaconf")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A colour checkpoint with flip TTA, its float ONNX, and photos of three kinds (a file, bytes, an array)."""
    tmp = tmp_path_factory.mktemp("runtime")
    ckpt = train_checkpoint(write_class_folders(tmp / "PetImages", per_class=12), tmp, channels=3, tta=True)
    onnx = export(str(ckpt), "onnx", str(tmp / "model.onnx"))
    photo = tmp / "dog.jpg"
    cv2.imwrite(str(photo), make_image(1, seed=7, size=(90, 60)))
    return ckpt, onnx, photo


def test_runtime_imports_neither_torch_nor_lightning_and_answers_as_the_checkpoint(exported):
    """A fresh interpreter: catdog.runtime loads the export and classifies a path, bytes and an array; torch,
    Lightning, Hydra never get imported; the answers are the checkpoint's."""
    ckpt, onnx, photo = exported
    code = f"""
import json, sys
import cv2
import catdog.runtime
model = catdog.runtime.load({str(onnx)!r})
photo = {str(photo)!r}
items = [photo, open(photo, "rb").read(), cv2.cvtColor(cv2.imread(photo), cv2.COLOR_BGR2RGB)]
print(json.dumps({{"results": model.predict(items), "modules": sorted({{m.split(".")[0] for m in sys.modules}})}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout)
    assert not set(answer["modules"]) & set(HEAVY), set(answer["modules"]) & set(HEAVY)
    assert "onnxruntime" in answer["modules"]
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    expected = catdog.load(ckpt).predict([photo, photo.read_bytes(), rgb])
    assert len(answer["results"]) == 3
    for got, want in zip(answer["results"], expected, strict=True):
        assert set(got) == set(want) == {"label", "probability", "probabilities"}
        assert got["label"] == want["label"]
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-4)


def test_catdog_load_takes_an_onnx_with_min_confidence(exported):
    ckpt, onnx, photo = exported
    model = catdog.load(onnx, min_confidence=1.0)
    assert isinstance(model, OnnxPredictor) and not model.explains
    assert model.predict([photo])[0]["label"] == "unsure"
    assert (model.classes, model.resolution, model.channels) == (["Cat", "Dog"], 16, 3)
    assert model.temperature == pytest.approx(catdog.load(ckpt).temperature)


def test_unusable_exports_are_one_clear_error(exported, tmp_path):
    _, onnx, photo = exported
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(onnx.read_bytes())
    with pytest.raises(CatdogError, match=r"lone.onnx: its preprocessing .*lone.onnx.json is missing"):
        catdog.load(lone)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    metadata_path(broken).write_text(metadata_path(onnx).read_text())
    with pytest.raises(CatdogError, match="broken.onnx: onnxruntime cannot load it"):
        catdog.load(broken)
    with pytest.raises(CatdogError, match="nope.onnx: no such file"):
        catdog.load(tmp_path / "nope.onnx")
    with pytest.raises(CatdogError, match="cannot be used as an image"):
        catdog.load(onnx).predict([b"not a photo"])


def test_predict_cli_takes_the_export_and_writes_the_checkpoints_labels(exported, tmp_path):
    ckpt, onnx, _ = exported
    photos = write_class_folders(tmp_path / "photos", per_class=3)
    rows = {}
    for name, model in (("ckpt", ckpt), ("onnx", onnx)):
        out = tmp_path / f"{name}.csv"
        proc = run_module(
            "catdog.predict",
            f"ckpt_path={model}",
            f"inputs={photos}",
            f"output={out}",
            f"hydra.run.dir={tmp_path}/run-{name}",
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        rows[name] = {r["path"]: r for r in csv.DictReader(out.open())}
    assert len(rows["onnx"]) == 6 and rows["onnx"].keys() == rows["ckpt"].keys()
    for path, row in rows["onnx"].items():
        assert row["label"] == rows["ckpt"][path]["label"]
        assert float(row["probability"]) == pytest.approx(float(rows["ckpt"][path]["probability"]), abs=1e-4)
    refused = run_module(
        "catdog.predict",
        f"ckpt_path={onnx}",
        f"inputs={photos}",
        "explain=true",
        f"hydra.run.dir={tmp_path}/run-explain",
    )
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "explain=true: Grad-CAM needs the network's gradients" in refused.stderr


def test_preprocessing_is_the_checkpoints_own_code(exported):
    """One decoder for both: the runtime's network input is the checkpoint predictor's, bit for bit."""
    ckpt, onnx, photo = exported
    assert np.array_equal(catdog.load(onnx).image(photo), catdog.load(ckpt).image(photo))
    assert type(catdog.load(onnx)).decode is type(catdog.load(ckpt)).decode
