"""data.resize: squash, crop or pad, on photos that are not square, the same in training's decode, the cache,
the checkpoint, evaluate, predict, serve, the torch-free runtime and a client that reads only the export JSON."""

from __future__ import annotations

import json
import signal

import cv2
import numpy as np
import pytest
from helpers import ROOT, make_image, train_checkpoint
from hydra import compose, initialize_config_dir

from benchmarks.serving import start_server
from catdog.checkpoint import read_checkpoint
from catdog.data.dataset import prepare_dataset
from catdog.data.decode import decode_image
from catdog.data.settings import DataSettings, DecodeSettings
from catdog.errors import CatdogError
from catdog.evaluate import decoded_as_trained, evaluate
from catdog.export import export, metadata_path
from catdog.inference import Predictor
from catdog.predict import predict_to_csv
from catdog.runtime import OnnxPredictor

MODES = ("squash", "crop", "pad")
BLUE, GREEN, RED = (255, 0, 0), (0, 255, 0), (0, 0, 255)  # BGR, as OpenCV writes


def three_bands(width: int, height: int) -> np.ndarray:
    """A BGR photo in three equal bands along its longer side: blue, green (the centre), red."""
    long = max(width, height)
    bands = np.array([BLUE] * (long // 3) + [GREEN] * (long // 3) + [RED] * (long // 3), np.uint8)
    strip = bands[None, :, :] if width >= height else bands[:, None, :]
    return np.ascontiguousarray(np.broadcast_to(strip, (height, width, 3)))


def encoded(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


@pytest.mark.parametrize(("width", "height"), [(90, 30), (30, 90)])
def test_each_mode_on_a_wide_and_a_tall_photo(width, height):
    """squash keeps all three bands, squeezed; crop keeps only the centre band; pad keeps all three at their own
    shape between black bars across the short side."""
    data = encoded(three_bands(width, height))
    wide = width > height
    along = (lambda x: x[6]) if wide else (lambda x: x[:, 6])  # the pixels along the longer side
    across = (lambda x: x[:, 6]) if wide else (lambda x: x[6])  # the pixels along the shorter side
    squash, crop, pad = (decode_image(data, 12, 3, resize=m) for m in MODES)
    assert squash.shape == crop.shape == pad.shape == (12, 12, 3)
    rgb = [tuple(reversed(c)) for c in (BLUE, GREEN, RED)]
    assert [tuple(p) for p in along(squash)[[0, 6, 11]]] == rgb  # every band, stretched over the square
    assert (crop.reshape(-1, 3) == rgb[1]).all()  # the centre square: green alone
    # letterboxed: 90x30 -> 12x4, on rows (columns) 4..7; black bars above and below (left and right)
    assert (across(pad)[:4] == 0).all() and (across(pad)[8:] == 0).all()
    assert [tuple(p) for p in along(pad)[[0, 6, 11]]] == rgb
    gray = decode_image(data, 12, 1, resize="pad")
    assert gray.shape == (12, 12, 1) and (across(gray)[:4] == 0).all() and across(gray)[4:8].min() > 0


def test_a_square_photo_is_the_same_in_every_mode():
    data = encoded(cv2.resize(three_bands(90, 30), (60, 60), interpolation=cv2.INTER_NEAREST))
    squash, crop, pad = (decode_image(data, 12, 3, resize=m) for m in MODES)
    np.testing.assert_array_equal(squash, crop)
    np.testing.assert_array_equal(squash, pad)


def test_an_unknown_mode_is_one_line_naming_the_key():
    with pytest.raises(
        CatdogError, match=r"data.resize='stretch' is invalid: expected squash or crop or pad"
    ):
        DecodeSettings(resize="stretch")
    with pytest.raises(CatdogError, match=r"data.resize='letterbox' is invalid"):
        DataSettings.from_config({"source": "x", "resize": "letterbox"})


def test_the_model_takes_the_mode_from_the_data_config():
    """train.py's model stores data.resize in the checkpoint, as it does the channels and resolution."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        assert compose("train", ["data.resize=pad"]).model.resize == "pad"
        assert compose("train").model.resize == "squash"


@pytest.fixture(scope="module")
def wide_tree(tmp_path_factory):
    """Two classes of wide photos (60x24): stripes across or along, and a 20 px wide band of the other pattern
    at each end, so that crop, pad and squash show the network different pictures."""
    root = tmp_path_factory.mktemp("wide") / "photos"
    for label, name in enumerate(("Cat", "Dog")):
        (root / name).mkdir(parents=True)
        for i in range(12):
            image = make_image(label, seed=label * 1000 + i, size=(60, 24))
            image[:, :12] = make_image(1 - label, seed=5000 + i, size=(12, 24))
            image[:, -12:] = make_image(1 - label, seed=6000 + i, size=(12, 24))
            cv2.imwrite(str(root / name / f"{i}.png"), image)
    return root


def test_the_cache_is_keyed_by_the_mode_and_the_split_is_the_same_in_every_mode(wide_tree, tmp_path):
    arrays = {
        m: prepare_dataset(
            DataSettings.from_config(
                dict(
                    source=str(wide_tree),
                    resolution=16,
                    channels=3,
                    cache_dir=str(tmp_path),
                    resize=m,
                    progress=False,
                )
            )
        )
        for m in MODES
    }
    assert len({a.directory for a in arrays.values()}) == 3
    images = {m: a.images for m, a in arrays.items()}
    # 60x24 -> 16x6 (round(24 * 16 / 60) = 6.4 -> 6): bars of 5 rows above and below
    assert (images["pad"][:, :5] == 0).all() and (images["pad"][:, 11:] == 0).all()
    assert (images["pad"][:, 5:11].mean(axis=(1, 2, 3)) > 20).all()  # the photo between the bars
    assert not (images["squash"][:, :5] == 0).all()
    assert not np.array_equal(images["crop"], images["squash"])
    # the duplicate groups (hence the split) come from the squashed photo in every mode
    assert arrays["crop"].photos["group"] == arrays["pad"].photos["group"] == arrays["squash"].photos["group"]


@pytest.fixture(scope="module", params=["crop", "pad"])
def trained(request, wide_tree, tmp_path_factory):
    """A colour checkpoint trained with data.resize=<mode>, its ONNX export and the export's JSON."""
    tmp = tmp_path_factory.mktemp(f"resize-{request.param}")
    mode = request.param
    ckpt = train_checkpoint(wide_tree, tmp, channels=3, data={"resize": mode}, resize=mode)
    onnx = export(str(ckpt), "onnx", str(tmp / "model.onnx"))
    return mode, ckpt, onnx, json.loads(metadata_path(onnx).read_text()), tmp


def client_input(meta: dict, path) -> np.ndarray:
    """A deployer's preprocessing from the export JSON alone: its Python lines, run with cv2 and numpy."""
    scope = {"cv2": cv2, "np": np, "path": str(path)}
    exec("\n".join(meta["preprocess"]["python"]), scope)
    return scope["x"]


@pytest.mark.slow
def test_training_predict_runtime_evaluate_and_a_json_client_see_the_same_pixels(
    trained, wide_tree, tmp_path
):
    mode, ckpt, onnx, meta, tmp = trained
    predictor, runtime = Predictor.from_checkpoint(ckpt), OnnxPredictor(onnx)
    assert predictor.resize == runtime.resize == read_checkpoint(ckpt)["ImageDataModule"]["resize"] == mode
    assert meta["preprocess"]["arguments"]["resize"] == mode and mode in json.dumps(
        meta["preprocess"]["rule"]
    )
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        # data.resize says squash: the checkpoint's mode must win
        overrides = ["data.resize=squash", "data.progress=false", f"paths.output_dir={tmp_path}"]
        given = [f"ckpt_path={ckpt}", f"data.source={wide_tree}", f"data.cache_dir={tmp / 'cache'}"]
        cfg = compose("evaluate", [*given, *overrides])
    arrays = decoded_as_trained(cfg, predictor)
    assert arrays.directory.parent == tmp / "cache"  # the very cache training wrote
    assert len(list((tmp / "cache").iterdir())) == 1
    for i, path in enumerate(arrays.photos["path"]):
        trained_on = arrays.images[i]
        np.testing.assert_array_equal(predictor.image(wide_tree / path), trained_on)
        np.testing.assert_array_equal(runtime.image(wide_tree / path), trained_on)
        np.testing.assert_array_equal(client_input(meta, wide_tree / path)[0], trained_on.transpose(2, 0, 1))
    metrics = evaluate(cfg)
    out = tmp_path / "pred.csv"
    predict_to_csv(str(onnx), str(wide_tree), str(out))
    predicted = (out.read_text().count(",Cat,"), out.read_text().count(",Dog,"))
    assert sum(predicted) == metrics["n_images"] == 24
    matrix = np.array(metrics["confusion_matrix"])
    assert tuple(matrix.sum(0)) == predicted  # evaluate's predicted counts: predict's on the export


@pytest.mark.slow
def test_serve_decodes_as_the_checkpoint_was_trained(trained, tmp_path):
    from test_serve import post

    mode, ckpt, _, _, _ = trained
    photo = three_bands(90, 30)
    proc, url = start_server(ckpt, tmp_path)
    try:
        status, answer = post(url, {"file": ("wide.png", encoded(photo))})
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert status == 200
    expected = Predictor.from_checkpoint(ckpt).predict([cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)])[0]
    assert answer["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)
    squashed = Predictor.from_checkpoint(ckpt)
    squashed.resize = "squash"
    other = squashed.predict([cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)])[0]
    assert answer["probabilities"] != pytest.approx(other["probabilities"], abs=1e-6)


def test_checkpoints_and_exports_from_before_the_key_squash(trained, tmp_path):
    import torch

    _, ckpt, onnx, meta, _ = trained
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    del state["hyper_parameters"]["resize"], state["ImageDataModule"]["resize"]
    torch.save(state, tmp_path / "old.ckpt")
    (tmp_path / "old.onnx").write_bytes(onnx.read_bytes())
    del meta["preprocess"]["arguments"]["resize"]
    metadata_path(tmp_path / "old.onnx").write_text(json.dumps(meta))
    photo = three_bands(90, 30)
    squashed = decode_image(encoded(photo), 16, 3)
    for old in (Predictor.from_checkpoint(tmp_path / "old.ckpt"), OnnxPredictor(tmp_path / "old.onnx")):
        assert old.resize == "squash"
        np.testing.assert_array_equal(old.image(cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)), squashed)


def test_grad_cam_overlays_show_what_the_network_saw():
    """Its heatmap covers the network's square: the photo's centre square (crop), the letterbox (pad), or the whole
    photo in its own shape (squash, the heatmap stretched over it)."""
    from catdog.explain.gradcam import display_image

    data, fallback = encoded(three_bands(90, 30)), np.zeros((12, 12, 3), np.uint8)
    assert display_image(data, fallback).shape == (30, 90, 3)
    crop = display_image(data, fallback, resize="crop")
    assert crop.shape == (30, 30, 3) and (crop.reshape(-1, 3) == GREEN[::-1]).all()
    pad = display_image(data, fallback, resize="pad")
    assert pad.shape == (90, 90, 3) and (pad[:30] == 0).all() and (pad[60:] == 0).all()
    assert display_image(data, fallback, max_side=45, resize="pad").shape == (45, 45, 3)
