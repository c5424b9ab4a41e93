"""Predicting with a checkpoint: the Python API on paths and arrays, and the CLI on folders with bad files."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from helpers import ROOT, make_image, run_module, train_checkpoint, write_class_folders, zip_tree
from hydra import compose, initialize_config_dir

import catdog
from catdog.batching import batches
from catdog.checkpoint import load_classifier
from catdog.errors import CatdogError
from catdog.inference import Predictor, Probabilities
from catdog.models.convnet_settings import ConvNetSettings
from catdog.predict import predict_to_csv, prediction_rows


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    return train_checkpoint(write_class_folders(tmp / "PetImages", per_class=12), tmp)


@pytest.fixture
def photos(tmp_path):
    """PNGs of both classes in nested folders, plus files that are not usable images."""
    for i in range(3):
        for label, name in enumerate(("cats", "dogs")):
            (tmp_path / "in" / name / "deeper").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(
                str(tmp_path / "in" / name / "deeper" / f"{i}.png"),
                make_image(label, seed=500 + i, size=(60, 45)),
            )
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    (tmp_path / "in" / "empty.jpg").write_bytes(b"")
    ok, jpg = cv2.imencode(".jpg", make_image(0, seed=1))
    (tmp_path / "in" / "cut.jpg").write_bytes(jpg.tobytes()[:300])
    return tmp_path / "in"


def test_load_predicts_paths_and_arrays_alike(ckpt, photos):
    """An RGB array of a lossless file gets exactly the file's preprocessing, hence the same probabilities."""
    predictor = catdog.load(ckpt)
    assert (predictor.resolution, predictor.channels, predictor.classes) == (16, 3, ["Cat", "Dog"])
    path = photos / "dogs" / "deeper" / "0.png"
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    by_path, by_array = predictor.predict([path, rgb])
    assert by_path["probabilities"] == pytest.approx(by_array["probabilities"], abs=1e-6)
    assert by_path["label"] == max(by_path["probabilities"], key=by_path["probabilities"].get)
    assert sum(by_path["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert by_path["probability"] == max(by_path["probabilities"].values())


def test_load_works_from_the_folder_above_a_clone_named_catdog(ckpt, photos, tmp_path):
    """There `import catdog` finds the clone before the installed package; it must still be the package."""
    (tmp_path / "work").mkdir()  # holding a clone named catdog, as `git clone .../catdog` makes
    (tmp_path / "work" / "catdog").symlink_to(ROOT, target_is_directory=True)
    script = (
        "import sys, catdog; from catdog.predict import list_inputs; print(catdog.__file__); "
        "print(catdog.load(sys.argv[1]).predict([sys.argv[2]])[0]['label'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as a user's shell has it
    path = photos / "dogs" / "deeper" / "0.png"
    proc = subprocess.run(
        [sys.executable, "-c", script, str(ckpt), str(path)],
        cwd=tmp_path / "work",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    where, label = proc.stdout.split()
    assert where == str(ROOT / "catdog" / "__init__.py")  # the clone's own package
    assert label == catdog.load(ckpt).predict([path])[0]["label"]


def test_arrays_of_any_shape_and_size(ckpt):
    predictor = catdog.load(ckpt)
    rgb = make_image(1, seed=3, size=(300, 200))
    gray, rgba = rgb[:, :, 0], np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    for image in (rgb, gray, gray[:, :, None], rgba, make_image(0, seed=4, size=(8, 6))):
        assert predictor.image(image).shape == (16, 16, 3)
    assert predictor.predict([rgb])[0]["probabilities"] == pytest.approx(
        predictor.predict([rgba])[0]["probabilities"]
    )
    with pytest.raises(CatdogError, match="uint8"):
        predictor.predict([rgb.astype(np.float32)])
    with pytest.raises(CatdogError, match="missing.jpg"):
        predictor.predict(["missing.jpg"])


def test_batches_give_the_same_probabilities(ckpt, photos):
    predictor = catdog.load(ckpt)
    paths = sorted(photos.rglob("*.png"))
    whole = [r["probabilities"] for r in predictor.predict(paths)]
    batched = [r["probabilities"] for r in predictor.predict(paths, batch_size=4)]
    assert len(whole) == 6
    for a, b in zip(whole, batched, strict=True):
        assert a == pytest.approx(b, abs=1e-6)
    assert list(batches(6, 4)) == [slice(0, 4), slice(4, 6)] and not list(batches(0, 4))


def test_probabilities_follow_the_classifiers_tta(ckpt):
    """What predict/export compute is what the classifier reports in validation, with and without tta, divided by
    the checkpoint's temperature."""
    model = load_classifier(ckpt)
    x = torch.from_numpy(np.stack([make_image(i % 2, seed=i, size=(16, 16)) for i in range(4)])).permute(
        0, 3, 1, 2
    )
    for tta in (False, True):
        model.hparams.tta = tta
        expected = (model.predict_logits(x) / model.temperature).softmax(1)
        assert torch.allclose(Probabilities(model)(x), expected, atol=1e-6)


def test_predict_cli_writes_a_row_per_file_and_skips_bad_ones(ckpt, photos, tmp_path):
    out = tmp_path / "pred.csv"
    proc = run_module(
        "catdog.predict",
        f"ckpt_path={ckpt}",
        f"inputs={photos}",
        f"output={out}",
        "batch_size=4",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipped 2" in proc.stdout
    assert b"\r" not in out.read_bytes()  # plain \n line ends
    with open(out) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "label", "probability", "p_Cat", "p_Dog"]
    by_name = {r[0].removeprefix(str(photos) + "/"): r[1:] for r in rows[1:]}
    assert len(by_name) == 8 and "notes.txt" not in by_name  # passed over as training passes it over
    for name in ("empty.jpg", "cut.jpg"):
        assert by_name[name][0] == "skipped" and by_name[name][1]
    assert "truncated" in by_name["cut.jpg"][1]
    expected = Predictor.from_checkpoint(ckpt).predict(sorted(photos.rglob("*.png")))
    got = [by_name[str(p.relative_to(photos))] for p in sorted(photos.rglob("*.png"))]
    assert [g[0] for g in got] == [e["label"] for e in expected]
    assert [float(g[1]) for g in got] == pytest.approx([e["probability"] for e in expected], abs=1e-5)


def test_zip_and_single_file_inputs(ckpt, photos, tmp_path):
    predictor = Predictor.from_checkpoint(ckpt)
    from_folder = {
        r[0].removeprefix(str(photos.parent) + "/"): r[1:] for r in prediction_rows(predictor, str(photos), 4)
    }
    from_zip = {
        r[0]: r[1:] for r in prediction_rows(predictor, str(zip_tree(photos, tmp_path / "in.zip")), 4)
    }
    # archive members are named relative to the zip; other batches may round the 6th decimal differently
    assert len(from_zip) == 8 and from_zip.keys() == from_folder.keys()
    for name, (label, value, *_) in from_zip.items():
        assert label == from_folder[name][0]
        if label != "skipped":
            assert float(value) == pytest.approx(float(from_folder[name][1]), abs=2e-6)
    single = list(prediction_rows(predictor, str(photos / "cats" / "deeper" / "1.png"), 4))
    assert len(single) == 1 and single[0][1] == from_folder["in/cats/deeper/1.png"][0]
    assert float(single[0][2]) == pytest.approx(float(from_folder["in/cats/deeper/1.png"][1]), abs=2e-6)
    with pytest.raises(CatdogError, match="no such file"):
        list(prediction_rows(predictor, str(tmp_path / "nothing"), 4))


def test_a_failed_run_leaves_no_partial_csv(ckpt, tmp_path):
    out = tmp_path / "pred.csv"
    with pytest.raises(CatdogError, match="inputs=.*nothing: no such file"):
        predict_to_csv(str(ckpt), str(tmp_path / "nothing"), str(out))
    assert list(tmp_path.iterdir()) == []


def test_a_batch_size_below_one_is_named(ckpt, photos, tmp_path):
    from catdog.predict import run

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "predict", [f"ckpt_path={ckpt}", f"inputs={photos}", f"output={tmp_path}/p.csv", "batch_size=0"]
        )
    with pytest.raises(CatdogError, match="batch_size=0 is invalid"):
        run(cfg)
    assert not (tmp_path / "p.csv").exists()


def test_a_checkpoint_of_catdog_0_2_with_network_keys_under_net_still_loads(ckpt, tmp_path):
    checkpoint = torch.load(ckpt, weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["kernel"] == 3  # 0.1 and 0.3 store model.channels, model.kernel, ... at the top
    # 0.2 nested them (model.net.*)
    hparams["net"] = {k: hparams.pop(k) for k in ConvNetSettings.keys() if k in hparams}
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    x = np.stack([make_image(label, seed=7)[:16, :16] for label in (0, 1)])
    assert torch.load(old, weights_only=True)["hyper_parameters"]["net"]["kernel"] == 3
    np.testing.assert_allclose(
        Predictor.from_checkpoint(old).probabilities(x), Predictor.from_checkpoint(ckpt).probabilities(x)
    )


def test_predict_passes_over_what_training_passes_over_with_its_reasons(ckpt, tmp_path, caplog):
    """.DS_Store, Thumbs.db, AppleDouble `._x` and notes.txt are no rows; a .jfif and a .jpe are predicted, as
    training reads them; the log counts the rest with training's reasons."""
    from catdog.data.sources import find_images

    folder = write_class_folders(tmp_path / "in", per_class=2)
    ok, jpg = cv2.imencode(".jpg", make_image(0, seed=3))
    for name in (
        "Cat/saved.jfif",
        "Dog/old.jpe",
        "Cat/._0.jpg",
        "Cat/.DS_Store",
        "Dog/Thumbs.db",
        "notes.txt",
    ):
        (folder / name).write_bytes(jpg.tobytes())
    (folder / "phone.HEIC").write_bytes(b"ftypheic")
    caplog.set_level("INFO")
    rows = list(prediction_rows(Predictor.from_checkpoint(ckpt), str(folder), 4))
    names = sorted(r[0].removeprefix(str(folder) + "/") for r in rows)
    assert names == [
        "Cat/0.jpg",
        "Cat/1.jpg",
        "Cat/saved.jfif",
        "Dog/0.jpg",
        "Dog/1.jpg",
        "Dog/old.jpe",
        "phone.HEIC",
    ]
    # a photo OpenCV cannot read is a row, with the fix
    assert [r[1:3] for r in rows if r[1] == "skipped"] == [
        ("skipped", "unsupported image format (.HEIC: convert it to JPEG)")
    ]
    assert (
        "Passed over 4 files that are no photos: 2 macOS metadata file, 2 not an image file (by extension)"
        in (caplog.text)
    )
    found = find_images(folder, "dir")  # training: the same photos, the same reasons
    assert sorted(found.paths) == names[:-1]
    assert sorted(i["reason"] for i in found.ignored) == ["macOS metadata file"] * 2 + [
        "not an image file (by extension)"
    ] * 2 + ["unsupported image format (.HEIC: convert it to JPEG)"]
