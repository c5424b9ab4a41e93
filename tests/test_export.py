"""Exports give the checkpoint's probabilities (to 1e-4), with their preprocessing in a JSON beside them."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
from helpers import ROOT, make_image, photo_like, run_module, train_checkpoint, write_class_folders
from hydra import compose, initialize_config_dir

from catdog.data.sources import find_images
from catdog.errors import CatdogError
from catdog.evaluate import decoded_as_trained, evaluate, logits_of
from catdog.export import export, metadata_path
from catdog.inference import Predictor

PHOTO_SIZES = [(400, 300), (900, 700), (1600, 1200)]
# the fast/best presets' network and what they train with
PRESET_NET = {"padding": "same", "convs_per_stage": 2, "batchnorm": True, "head": "gap", "hidden": []}
PRESET_MODEL = {"normalize": True, "mean": [0.45], "std": [0.25], "tta": True, "channels_last": True}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    # the fast/best presets' architecture: double 'same' convs with batch norm, a global-average-pooling head,
    # inputs normalized inside the net, channels_last weights and flip TTA
    return train_checkpoint(
        write_class_folders(tmp / "PetImages", per_class=12), tmp, channels=1, net=PRESET_NET, **PRESET_MODEL
    )


def run_exported(path, fmt: str, x: np.ndarray) -> np.ndarray:
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["probabilities"], {"images": x})[0]
    return torch.export.load(str(path)).module()(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
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
    np.testing.assert_allclose(
        run_exported(path, fmt, np.ascontiguousarray(images[:1].transpose(0, 3, 1, 2))),
        expected[:1],
        atol=1e-4,
    )
    # the exported net is the preset's: trained batch-norm statistics, no dense layer after the pooling
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert any(k.endswith("running_mean") and v.abs().sum() > 0 for k, v in state.items())
    assert [tuple(v.shape) for k, v in state.items() if v.ndim == 2] == [(2, 8)]
    meta = json.loads(metadata_path(path).read_text())
    assert (meta["resolution"], meta["channels"], meta["classes"]) == (16, 1, ["Cat", "Dog"])
    assert meta["input"]["dtype"] == "uint8" and meta["input"]["layout"] == "NCHW"
    assert meta["format"] == fmt and meta["tta"] is True and "probabilities" in meta["output"]["meaning"]
    assert "torch.export" in meta["exporter"] and path.suffix == {"onnx": ".onnx", "pt2": ".pt2"}[fmt]
    assert meta["normalize"]["inside_model"] is True and "normalisation" not in meta
    assert meta["preprocess"]["function"] == "catdog.preprocessing.load_image"
    assert meta["preprocess"]["arguments"] == {
        "resolution": 16,
        "channels": 1,
        "fast_decode": False,
        "resize": "squash",
    }


def test_export_cli_writes_beside_the_checkpoint(ckpt, tmp_path):
    proc = run_module("catdog.export", f"ckpt_path={ckpt}", "format=onnx", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ckpt.with_suffix(".onnx").is_file() and ckpt.with_name(ckpt.stem + ".onnx.json").is_file()


def test_onnx_goes_through_the_dynamo_exporter_in_one_file(ckpt, tmp_path):
    """torch.export's graph (the dynamo exporter): onnxscript's opset, a symbolic batch, no external weight file."""
    import onnx

    path = export(str(ckpt), "onnx", str(tmp_path / "model.onnx"))
    model = onnx.load(str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json"]
    assert model.producer_name == "pytorch" and {o.domain: o.version for o in model.opset_import}[""] >= 18
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value


@pytest.mark.parametrize(
    ("fmt", "quantize", "message"),
    [
        ("tflite", None, "format=tflite: must be one of onnx, pt2"),
        ("torchscript", None, "format=torchscript: TorchScript is deprecated in PyTorch; give format=pt2"),
        ("pt2", "int8", "quantize=int8 needs format=onnx"),
        ("onnx", "int4", "quantize=int4: must be null or int8"),
    ],
)
def test_unknown_requests_are_one_clear_error(ckpt, fmt, quantize, message):
    with pytest.raises(CatdogError, match=message):
        export(str(ckpt), fmt, quantize=quantize)


def test_output_naming_a_folder_writes_inside_it(ckpt, tmp_path):
    path = export(str(ckpt), "onnx", str(tmp_path))
    assert path == tmp_path / ckpt.with_suffix(".onnx").name and path.is_file()
    assert metadata_path(path).is_file()


@pytest.fixture(scope="module", params=[False, True], ids=["full-decode", "fast-decode"])
def photo_run(request, tmp_path_factory):
    """A colour checkpoint (trained with or without data.fast_decode), its two exports, and labelled photos
    larger than its input, of three sizes, so that the reduced JPEG decode would apply to every one."""
    tmp = tmp_path_factory.mktemp("parity")
    train = write_class_folders(tmp / "train", per_class=12)
    ckpt = train_checkpoint(train, tmp, channels=3, tta=True, fast_decode=request.param)
    photos = tmp / "photos"
    for label, name in enumerate(("Cat", "Dog")):
        (photos / name).mkdir(parents=True)
        for i, size in enumerate(PHOTO_SIZES * 2):
            image = photo_like(*size, seed=10 * label + i)
            cv2.imwrite(str(photos / name / f"{i}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    onnx, program = (export(str(ckpt), fmt, str(tmp / f"model.{fmt}")) for fmt in ("onnx", "pt2"))
    return ckpt, onnx, program, photos, request.param


def client_input(meta: dict, path) -> np.ndarray:
    """A deployer's preprocessing written from the export JSON alone: its Python lines, with cv2 and numpy."""
    scope = {"cv2": cv2, "np": np, "path": str(path)}
    exec("\n".join(meta["preprocess"]["python"]), scope)
    return scope["x"]


def test_checkpoint_onnx_client_and_exported_program_agree_on_photos_of_every_size(photo_run, tmp_path):
    """evaluate, an onnxruntime client that knows only the JSON, and the .pt2 ExportedProgram: same labels, same
    probabilities."""
    ckpt, onnx, program, photos, fast_decode = photo_run
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        # data.fast_decode says the opposite of the checkpoint: the checkpoint's rule must win
        overrides = [
            f"data.fast_decode={not fast_decode}",
            "data.progress=false",
            f"paths.output_dir={tmp_path}",
        ]
        given = [f"ckpt_path={ckpt}", f"data.source={photos}", f"data.cache_dir={tmp_path}/cache"]
        cfg = compose("evaluate", [*given, *overrides])
    predictor = Predictor.from_checkpoint(ckpt)
    arrays = decoded_as_trained(cfg, predictor)  # evaluate's own steps, from decode to probabilities
    expected = predictor.calibrated(logits_of(predictor, arrays, np.arange(len(arrays.labels)), 5))
    metrics = evaluate(cfg)
    paths = find_images(photos, "dir", "auto").paths
    assert len(paths) == len(expected) == 12 and metrics["n_images"] == 12

    meta = json.loads(metadata_path(onnx).read_text())
    assert meta["preprocess"]["arguments"]["fast_decode"] is fast_decode
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    inputs = np.concatenate([client_input(meta, photos / p) for p in paths])
    np.testing.assert_array_equal(inputs, arrays.images.transpose(0, 3, 1, 2))
    client = session.run([meta["output"]["name"]], {meta["input"]["name"]: inputs})[0]
    exported = torch.export.load(str(program)).module()(torch.from_numpy(inputs)).numpy()
    for got in (client, exported):
        np.testing.assert_allclose(got, expected, atol=1e-4)
        np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))
    labels = np.array([meta["classes"].index(p.split("/")[0]) for p in paths])
    matrix = np.zeros((2, 2), int)
    np.add.at(matrix, (labels, client.argmax(1)), 1)
    assert metrics["confusion_matrix"] == matrix.tolist()


def test_a_plain_opencv_client_gets_catdogs_pixels_unless_fast_decode_was_chosen(photo_run):
    """cv2.imread + cv2.resize(INTER_AREA), the issue's deployer, matches the default decode bit for bit."""
    ckpt, _, _, photos, fast_decode = photo_run
    predictor = Predictor.from_checkpoint(ckpt)
    differ = []
    for path in sorted(photos.rglob("*.jpg")):
        image = cv2.resize(cv2.imread(str(path)), (16, 16), interpolation=cv2.INTER_AREA)
        differ.append(not np.array_equal(predictor.image(path), cv2.cvtColor(image, cv2.COLOR_BGR2RGB)))
    assert any(differ) if fast_decode else not any(differ)


def test_preprocessing_imports_without_torch_or_lightning():
    """A serving process can use catdog.preprocessing.load_image with OpenCV and numpy installed, nothing more."""
    code = (
        "import sys, catdog.preprocessing; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'pytorch_lightning', 'lightning', "
        "'hydra', 'omegaconf', 'torchmetrics'}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert proc.stdout.strip() == "[]"


def test_int8_export_is_calibrated_on_the_val_split_and_written_beside_the_float_model(ckpt, tmp_path):
    """`quantize=int8` from the command line: ONNX Runtime's static quantization, its own JSON, the checkpoint's
    answers within int8 rounding."""
    out = tmp_path / "model.onnx"
    proc = run_module(
        "catdog.export",
        f"ckpt_path={ckpt}",
        "format=onnx",
        "quantize=int8",
        f"output={out}",
        f"data.cache_dir={tmp_path}/cache",
        f"hydra.run.dir={tmp_path}/run",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    int8 = tmp_path / "model.int8.onnx"
    assert f"to {int8}" in proc.stdout and "Created a copy" not in proc.stdout + proc.stderr
    float_meta = json.loads(metadata_path(out).read_text())
    meta = json.loads(metadata_path(int8).read_text())
    assert meta["model"] == int8.name and meta["float_model"] == out.name and "quantization" not in float_meta
    quantization = meta.pop("quantization")
    assert quantization["tool"] == "onnxruntime.quantization.quantize_static"
    # 24 photos, a quarter held out for val: what the checkpoint never trained on
    assert quantization["calibration"] == f"6 photos from the val split of {ckpt.parent / 'PetImages'}"
    assert {k: v for k, v in meta.items() if k not in ("model", "float_model")} == {
        k: v for k, v in float_meta.items() if k != "model"
    }
    import onnx

    graph = onnx.load(str(int8)).graph
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_weights) == sum(node.op_type == "Conv" for node in graph.node) > 0
    predictor = Predictor.from_checkpoint(ckpt)
    images = np.stack([predictor.image(make_image(i % 2, seed=100 + i, size=(50, 40))) for i in range(16)])
    x = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    expected, got = predictor.probabilities(images), run_exported(int8, "onnx", x)
    assert 0 < np.abs(got - expected).max() < 0.1  # int8 rounding: close, not equal
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9


def test_int8_calibrates_on_data_source_when_given(ckpt, tmp_path):
    from catdog.export import run

    photos = write_class_folders(tmp_path / "other", per_class=5)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "export",
            [
                f"ckpt_path={ckpt}",
                "quantize=int8",
                "calibration_photos=4",
                f"output={tmp_path / 'm.onnx'}",
                f"data.source={photos}",
                f"data.cache_dir={tmp_path}/cache",
                "data.progress=false",
                f"paths.output_dir={tmp_path}",
            ],
        )
    path = run(cfg)
    meta = json.loads(metadata_path(path).read_text())
    assert (
        path.name == "m.int8.onnx"
        and meta["quantization"]["calibration"] == f"4 photos from all photos of {photos}"
    )
    cfg.calibration_photos = 0
    with pytest.raises(CatdogError, match="calibration_photos=0: must be a positive number"):
        run(cfg)
