"""evaluate reports calibration (ECE before and after temperature scaling, a reliability diagram) and, with
robustness=true, accuracy under each corruption; export divides by the temperature too."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from helpers import make_image, set_temperature, train_checkpoint, write_class_folders
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_evaluate import evaluate_in_process

import catdog
from catdog.explain.calibration import expected_calibration_error
from catdog.explain.robustness import CORRUPTIONS, corrupt
from catdog.export import export, metadata_path


@pytest.fixture(scope="module")
def data_and_ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("calibrate")
    source = write_class_folders(tmp / "PetImages", per_class=12)
    return source, set_temperature(train_checkpoint(source, tmp), 1.7)


def test_evaluate_reports_calibration_and_robustness(data_and_ckpt, tmp_path, caplog):
    source, ckpt = data_and_ckpt
    with caplog.at_level("INFO"):
        metrics = evaluate_in_process(ckpt, source, tmp_path, "robustness=true")
    table = next(r.getMessage() for r in caplog.records if "Accuracy under corruptions" in r.getMessage())
    assert [line.split()[0] for line in table.splitlines()[1:]] == [
        "corruption",
        "blur",
        "jpeg",
        "brightness",
        "contrast",
        "rotation",
        "zoom",
        "grayscale",
    ]
    predictor = catdog.load(ckpt)
    assert metrics["temperature"] == pytest.approx(predictor.temperature) and metrics["temperature"] != 1
    images = np.stack([predictor.image(p) for p in sorted(source.rglob("*.jpg"))])
    labels = torch.tensor([p.parent.name == "Dog" for p in sorted(source.rglob("*.jpg"))]).long()
    logits = torch.from_numpy(predictor.logits(images))
    assert metrics["all/ece_uncalibrated"] == pytest.approx(
        expected_calibration_error(logits.softmax(1), labels)
    )
    calibrated = (logits / predictor.temperature).softmax(1)
    assert metrics["all/ece"] == pytest.approx(expected_calibration_error(calibrated, labels))
    kinds = {"blur", "jpeg", "brightness", "contrast", "rotation", "zoom", "grayscale"}
    names = {f"robustness/{k}_{s}" for k in kinds for s in (1, 2, 3)} | {"robustness/clean"}
    assert names == {k for k in metrics if k.startswith("robustness/")}
    assert metrics["robustness/clean"] == pytest.approx(metrics["all/acc"])
    assert all(0 <= metrics[k] <= 1 for k in names)
    # a flat grey image carries no stripes: the net cannot tell the classes apart any more
    assert metrics["robustness/contrast_3"] <= metrics["robustness/clean"]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert (
        saved["all/ece"] == metrics["all/ece"] and saved["robustness/jpeg_2"] == metrics["robustness/jpeg_2"]
    )
    for png in ("reliability_diagram.png", "robustness.png"):
        assert (tmp_path / png).stat().st_size > 10_000
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert {"all/reliability_diagram", "all/robustness"} <= set(events.Tags()["images"])
    assert {"all/ece", "all/ece_uncalibrated", "robustness/blur_3"} <= set(events.Tags()["scalars"])


def test_without_robustness_no_robustness_entries(data_and_ckpt, tmp_path):
    source, ckpt = data_and_ckpt
    metrics = evaluate_in_process(ckpt, source, tmp_path)
    assert "all/ece" in metrics and not any(k.startswith("robustness/") for k in metrics)
    assert not (tmp_path / "robustness.png").exists() and (tmp_path / "reliability_diagram.png").exists()


@pytest.mark.parametrize("channels", [3, 1])
def test_each_corruption_keeps_shape_and_grows_with_severity(channels):
    image = make_image(1, seed=0, size=(32, 32))[..., :channels]
    batch = np.stack([image, image])
    for kind, (_, params) in CORRUPTIONS.items():
        changes = []
        for severity in range(1, len(params) + 1):
            out = corrupt(batch, kind, severity)
            assert out.shape == batch.shape and out.dtype == np.uint8, kind
            changes.append(float(np.abs(out.astype(float) - batch).mean()))
        if kind == "grayscale" and channels == 1:
            assert changes == [0, 0, 0]
        else:
            assert 0 < changes[0] <= changes[-1], kind


def test_exported_model_divides_by_the_temperature(data_and_ckpt, tmp_path):
    _, ckpt = data_and_ckpt
    path = export(str(ckpt), "onnx", str(tmp_path / "model.onnx"))
    meta = json.loads(metadata_path(path).read_text())
    predictor = catdog.load(ckpt)
    assert meta["temperature"] == pytest.approx(predictor.temperature) and meta["temperature"] != 1
    images = np.stack([predictor.image(make_image(label, seed=5)) for label in (0, 1)])
    onnx_probs = ort.InferenceSession(str(path)).run(None, {"images": images.transpose(0, 3, 1, 2).copy()})[0]
    assert onnx_probs == pytest.approx(predictor.probabilities(images), abs=1e-5)
    uncalibrated = torch.from_numpy(predictor.logits(images)).softmax(1).numpy()
    assert np.abs(onnx_probs - uncalibrated).max() > 1e-4
