"""Grad-CAM looks where the class is, temperature scaling recovers a known temperature, predictions abstain."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import (
    ROOT,
    make_image,
    quiet_trainer,
    set_temperature,
    tiny_datamodule,
    tiny_overrides,
    train_checkpoint,
    train_in_process,
    write_class_folders,
    write_noisy_class_folders,
)

import catdog
from catdog.errors import CatdogError
from catdog.explain.calibration import expected_calibration_error, reliability_bins
from catdog.explain.gradcam import explanation_path, gradcam, overlay, resolve_layer
from catdog.models.classifier import ImageClassifier
from catdog.models.convnet import build_convnet
from catdog.models.convnet_settings import ConvNetSettings
from catdog.models.temperature import MIN_WRONG, T_RANGE, calibrate, fit_temperature
from catdog.predict import predict_to_csv


def corner_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise; class 1 has a bright square in the top-left corner, class 0 the same square bottom-right."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 120, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % 2
    x[y == 1, :, 2:10, 2:10] = 250
    x[y == 0, :, 22:30, 22:30] = 250
    return x, y


@pytest.fixture(scope="module")
def corner_net() -> torch.nn.Sequential:
    """A small fully convolutional net (global average pooling head) fitted to corner_images in ~60 steps."""
    torch.manual_seed(0)
    spec = ConvNetSettings(3, 32, channels=[8, 16], kernel=3, padding="same", head="gap", hidden=[])
    net = build_convnet(spec, num_classes=2)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    x, y = corner_images(64, seed=0)
    for _ in range(60):
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss < 0.3
    return net.eval()


def test_gradcam_peaks_where_the_class_lives(corner_net):
    x, y = corner_images(8, seed=1)
    with torch.inference_mode():  # as callers run it; gradcam leaves inference mode for its gradient
        heat = gradcam(corner_net, x)
    assert heat.shape == (8, 32, 32)
    assert float(heat.min()) >= 0 and torch.allclose(heat.amax(dim=(1, 2)), torch.ones(8))
    for h, label in zip(heat, y):
        row, col = np.unravel_index(int(h.argmax()), h.shape)
        top_left, bottom_right = float(h[:16, :16].mean()), float(h[16:, 16:].mean())
        if label == 1:
            assert row < 16 and col < 16 and top_left > 2 * bottom_right
        else:
            assert row >= 16 and col >= 16 and bottom_right > 2 * top_left
    assert torch.allclose(gradcam(corner_net, x, target=y), heat)


def test_layers_default_to_the_last_conv_stage_and_are_checked(corner_net):
    assert corner_net.explain_layer == 5 and isinstance(corner_net[5], torch.nn.ReLU)
    assert resolve_layer(corner_net, None) == 5 and resolve_layer(corner_net, "1") == 1
    assert gradcam(corner_net, corner_images(1, 3)[0], layer=2).shape == (1, 32, 32)
    for bad in (0, 7, 9, "conv", 99):
        with pytest.raises(CatdogError, match=f"explain_layer={bad}: .*1 \\(Conv2d\\).*default is 5"):
            resolve_layer(corner_net, bad)


def test_overlay_and_explanation_paths():
    image = np.zeros((30, 50, 1), np.uint8)
    heat = np.zeros((8, 8), np.float32)
    heat[0, 0] = 1
    out = overlay(image, heat)
    assert out.shape == (30, 50, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() != out[-1, -1].tolist()
    folder = Path("ex")
    assert explanation_path(folder, "a/b.jpg") == folder / "a" / "b.jpg.png"
    assert explanation_path(folder, "../../etc/x.png") == folder / "etc" / "x.png.png"
    assert explanation_path(folder, "a/b\\c.jpg") == folder / "a" / "b\\c.jpg.png"


def test_a_known_temperature_is_recovered():
    """Labels drawn from softmax(z); the net reports z * 2.5 (overconfident): the fit finds T = 2.5."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 3, generator=g) * 2
    labels = torch.multinomial(z.softmax(1), 1, generator=g).flatten()
    assert fit_temperature(z * 2.5, labels) == pytest.approx(2.5, rel=0.05)
    assert fit_temperature(z / 2, labels) == pytest.approx(0.5, rel=0.05)
    over = expected_calibration_error((z * 2.5).softmax(1), labels)
    scaled = expected_calibration_error((z * 2.5 / fit_temperature(z * 2.5, labels)).softmax(1), labels)
    assert scaled < 0.02 < over


def test_temperature_stays_finite_and_reliability_bins_count_every_image():
    logits = torch.tensor([[5.0, -5.0], [-4.0, 4.0]])
    assert 0.05 <= fit_temperature(logits, torch.tensor([0, 1])) <= 1
    assert 1 < fit_temperature(logits, torch.tensor([1, 0])) <= 20
    assert fit_temperature(logits[:0], torch.tensor([], dtype=torch.long)) == 1.0
    probs = np.array([[0.95, 0.05], [0.55, 0.45], [0.1, 0.9]])
    bins = reliability_bins(probs, np.array([0, 1, 1]), n_bins=10)
    assert bins["count"].sum() == 3 and bins["count"][9] == 2 and bins["count"][5] == 1
    assert bins["accuracy"][9] == 1 and bins["accuracy"][5] == 0


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explain")
    # its 6 val photos leave T = 1 (too few wrong to fit on): a temperature as a larger val split would give
    return set_temperature(train_checkpoint(write_class_folders(tmp / "PetImages", per_class=12), tmp), 1.7)


def test_the_issues_30_val_photos_and_a_fit_at_its_bound_leave_t_at_1():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(30, 2, generator=g) * 4
    labels = z.argmax(1)
    labels[0] = (
        1 - labels[0]
    )  # one wrong of 30, as in the run whose calibration raised test ECE 0.005 -> 0.059
    assert calibrate(z * 2, labels) == (1.0, "few wrong", calibrate(z * 2, labels).detail)
    assert "1 wrong predictions of 30" in calibrate(z * 2, labels).detail
    # a net at chance: the likelihood keeps falling as T grows, the fit stops at T_RANGE's end
    chance = torch.randn(400, 2, generator=g) * 3
    coin = torch.randint(0, 2, (400,), generator=g)
    assert fit_temperature(chance, coin) == T_RANGE[1] and calibrate(chance, coin)[:2] == (1.0, "at bound")


def test_enough_wrong_predictions_give_the_fitted_temperature():
    """MIN_WRONG wrong predictions of an overconfident net (it reports 2x its real logits): T near 2 is used."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(240, 2, generator=g) * 2
    labels = torch.multinomial(z.softmax(1), 1, generator=g).flatten()
    assert int((z.argmax(1) != labels).sum()) >= MIN_WRONG
    fit = calibrate(z * 2, labels)
    assert fit.problem is None and fit.temperature == fit_temperature(z * 2, labels) == pytest.approx(
        2, rel=0.25
    )


def val_logits(ckpt: Path, source: Path, cache: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The checkpoint's logits and the labels of its val split (as train_checkpoint split it)."""
    model = ImageClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    dm = tiny_datamodule(source, cache, val_fraction=0.5)
    with torch.no_grad():
        pairs = [(model(x), y) for x, y in dm.val_dataloader()]
    return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])


def test_training_stores_the_temperature_fitted_on_its_val_split(tmp_path):
    source = write_noisy_class_folders(tmp_path / "PetImages")  # ~100 val photos, ~30% of them shown wrong
    ckpt = train_checkpoint(source, tmp_path, data={"val_fraction": 0.5})
    t = float(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]["temperature"])
    logits, labels = val_logits(ckpt, source, tmp_path / "cache")
    assert int((logits.argmax(1) != labels).sum()) >= MIN_WRONG
    assert t != 1.0 and t == pytest.approx(calibrate(logits, labels).temperature, rel=1e-4)


@pytest.mark.slow
def test_a_run_with_a_tiny_val_split_warns_once_and_keeps_t_at_1(image_folder, tmp_path, caplog):
    metrics = train_in_process(*tiny_overrides(image_folder, tmp_path), "trainer.max_epochs=3")
    assert metrics["val/temperature"] == 1.0
    warned = [r.getMessage() for r in caplog.records if "Calibration left at T = 1" in r.getMessage()]
    assert len(warned) == 1 and "wrong predictions of 10 (a fitted T needs 20" in warned[0]


def test_the_stored_temperature_is_what_predictions_use(ckpt):
    t = 1.7
    predictor = catdog.load(ckpt)
    assert predictor.temperature == pytest.approx(t)
    images = np.stack([predictor.image(make_image(label, seed=7)) for label in (0, 1)])
    expected = torch.from_numpy(predictor.logits(images) / t).softmax(1).numpy()
    assert predictor.probabilities(images) == pytest.approx(expected, abs=1e-6)


def test_checkpoints_without_a_temperature_load_uncalibrated(ckpt, tmp_path):
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    del checkpoint["state_dict"]["temperature"]
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    model = ImageClassifier.load_from_checkpoint(old, map_location="cpu")
    assert float(model.temperature) == 1.0
    predictor = catdog.load(old)
    images = np.stack([predictor.image(make_image(1, seed=8))])
    assert predictor.probabilities(images) == pytest.approx(
        torch.from_numpy(predictor.logits(images)).softmax(1).numpy(), abs=1e-6
    )


def test_abstaining_below_min_confidence(ckpt):
    image = make_image(1, seed=9)
    sure = catdog.load(ckpt).predict([image])[0]
    assert sure["label"] in ("Cat", "Dog")
    unsure = catdog.load(ckpt, min_confidence=1.0).predict([image])[0]
    assert unsure["label"] == "unsure" and unsure["probabilities"] == sure["probabilities"]
    edge = catdog.load(ckpt, min_confidence=sure["probability"]).predict([image])[0]
    assert edge["label"] == sure["label"]
    with pytest.raises(CatdogError, match="min_confidence=1.5"):
        catdog.load(ckpt, min_confidence=1.5)


def test_explain_returns_heatmaps_and_predict_writes_overlays(ckpt, tmp_path):
    predictor = catdog.load(ckpt)
    heat = predictor.explain([make_image(0, seed=1), make_image(1, seed=2, size=(90, 60))])
    assert [h.shape for h in heat] == [(16, 16), (16, 16)]
    assert all(0 <= h.min() and h.max() <= 1 for h in heat)
    with pytest.raises(CatdogError, match="explain_layer=99"):
        predictor.explain([make_image(0, seed=1)], layer=99)
    photos = tmp_path / "in"
    (photos / "dogs").mkdir(parents=True)
    cv2.imwrite(str(photos / "dogs" / "a.jpg"), make_image(1, seed=3, size=(120, 80)))
    cv2.imwrite(str(photos / "b.png"), make_image(0, seed=4))
    cv2.imwrite(str(photos / "dogs" / "c\\d.png"), make_image(1, seed=5))  # a backslash: part of the name
    (photos / "notes.txt").write_text("not an image")  # passed over, as training passes it over
    out = tmp_path / "out" / "predictions.csv"
    counts = predict_to_csv(str(ckpt), str(photos), str(out), min_confidence=1.0, explain=True)
    rows = list(csv.DictReader(out.open()))
    assert counts["unsure"] == 3 and not counts.get("skipped")
    assert {r["label"] for r in rows} == {"unsure"}
    pngs = sorted(p.relative_to(out.parent).as_posix() for p in (out.parent / "explanations").rglob("*.png"))
    assert pngs == ["explanations/b.png.png", "explanations/dogs/a.jpg.png", "explanations/dogs/c\\d.png.png"]
    overlay_image = cv2.imread(str(out.parent / "explanations" / "dogs" / "a.jpg.png"))
    assert overlay_image.shape == (80, 120, 3)


@pytest.mark.parametrize("explain", [True, False])
def test_misclassified_images_in_tensorboard_sit_beside_their_heatmaps(explain, tmp_path):
    from functools import partial

    from pytorch_lightning.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

    from catdog.callbacks.mistakes import ValidationMistakes

    source = write_class_folders(tmp_path / "PetImages", per_class=8)
    dm = tiny_datamodule(source, tmp_path / "cache", val_fraction=0.5)
    # a learning rate of 0: the untrained net gets about half of the validation images wrong (seeded: an unseeded
    # initialisation can happen to get them all right)
    torch.manual_seed(0)
    model = ImageClassifier(
        3,
        16,
        classes=dm.classes,
        **dict(channels=[4, 8], kernel=3, hidden=[8]),
        optimizer=partial(torch.optim.SGD, lr=0.0),
    )
    trainer = quiet_trainer(
        logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=[ValidationMistakes(top_k=3, explain=explain)],
    )
    trainer.fit(model, datamodule=dm)
    events = EventAccumulator(trainer.logger.log_dir, size_guidance={IMAGES: 0})
    events.Reload()
    (image,) = events.Images("val/misclassified")
    # three mistakes in a row: three panels, or six with their heatmaps
    assert image.width == (2 * 3 * 220 if explain else 3 * 220)


@pytest.mark.parametrize("validated_last", [True, False])
def test_the_mistakes_reuse_the_last_validation_unless_training_moved_on(validated_last, tmp_path):
    """At the end of training the last validation epoch's scores are reused (no second pass over val); when an
    epoch trained after it (validation every 2nd epoch, 3 epochs), val is scored again with the final weights."""
    from functools import partial

    import pytorch_lightning as pl
    from pytorch_lightning.loggers import TensorBoardLogger

    from catdog.callbacks.mistakes import ValidationMistakes

    source = write_class_folders(tmp_path / "PetImages", per_class=8)
    dm = tiny_datamodule(source, tmp_path / "cache", val_fraction=0.5)
    model = ImageClassifier(
        3,
        16,
        classes=dm.classes,
        **dict(channels=[4, 8], kernel=3, hidden=[8]),
        optimizer=partial(torch.optim.Adam, lr=0.01),
    )
    calls = {"predict": 0, "before_end": -1}
    predict = model.predict_logits

    def counted(x):
        calls["predict"] += 1
        return predict(x)

    model.predict_logits = counted  # type: ignore[method-assign]

    class BeforeTheEnd(pl.Callback):  # listed first: its on_train_end runs before ValidationMistakes'
        def on_train_end(self, trainer, pl_module):
            calls["before_end"] = calls["predict"]

    mistakes = ValidationMistakes(top_k=3, explain=False)
    trainer = quiet_trainer(
        logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=[BeforeTheEnd(), mistakes],
        max_epochs=2 if validated_last else 3,
        check_val_every_n_epoch=2,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    val_batches = len(dm.val_dataloader())
    assert calls["before_end"] == val_batches  # the one validation epoch (epoch 2)
    assert calls["predict"] - calls["before_end"] == (0 if validated_last else val_batches)
    assert sum(len(y) for _, _, y in mistakes.scored(trainer, model)) == len(dm.splits["val"])


def test_predict_command_keys(ckpt, tmp_path, capsys):
    """`python -m catdog.predict ... explain=true min_confidence=... explain_layer=...` as composed by Hydra."""
    from hydra import compose, initialize_config_dir

    from catdog.predict import run

    photo = tmp_path / "in" / "a.png"
    photo.parent.mkdir()
    cv2.imwrite(str(photo), make_image(1, seed=5))
    keys = [f"ckpt_path={ckpt}", f"inputs={photo.parent}", f"output={tmp_path}/out/p.csv"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("predict", [*keys, "explain=true", "min_confidence=1.0", "explain_layer=2"])
        bad = compose("predict", [*keys, "explain=true", "explain_layer=0"])
    assert run(cfg) == {"unsure": 1}
    assert "Grad-CAM overlays in" in capsys.readouterr().out
    assert (tmp_path / "out" / "explanations" / "a.png.png").is_file()
    with pytest.raises(CatdogError, match="explain_layer=0"):
        run(bad)
