"""model.arch: every network kind goes through everything that uses a network (train, resume, evaluate, predict with
Grad-CAM, export, int8, the torch-free runtime, serve, audit), and a kind defined here, outside the package, joins
the table with its settings, its builder and its card alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from helpers import (
    make_image,
    run_in_process,
    run_train,
    tiny_overrides,
    train_in_process,
    write_class_folders,
)
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from catdog.errors import CatdogError
from catdog.models.arch import KINDS, NetworkSettings, register
from catdog.models.settings import ModelSettings
from catdog.rules import check_all, field_rules, is_int


def tiny(source: Path, out: Path, *extra: str, drop: tuple[str, ...] = ("model.hidden",)) -> list[str]:
    """tiny_overrides less the keys in `drop` (by default the ConvNet's key that a resnet does not take)."""
    return [o for o in tiny_overrides(source, out) if not o.startswith(drop)] + list(extra)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# --- a kind from outside the package: its settings, its builder, its card ---


@dataclass(frozen=True)
class ToySettings(NetworkSettings):
    """One conv of `width` filters, global average pooling, logits."""

    builder: ClassVar[str] = f"{__name__}.build_toy"
    width: int = 4

    def __post_init__(self) -> None:
        rules = (("width", is_int(self.width) and self.width >= 1, "a positive integer"),)
        check_all(*field_rules(self, "model.", rules), *self.input_checks())


def build_toy(settings: ToySettings, num_classes: int, mean=None, std=None):
    from torch import nn

    from catdog.models.network import Network, ScaleInput

    return Network(
        ScaleInput(settings.in_channels, mean, std),
        nn.Conv2d(settings.in_channels, settings.width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(settings.width, num_classes),
        stage_ends=[2],
    )


@pytest.fixture
def toy():
    register("toy", ToySettings)
    ConfigStore.instance().store(
        group="model", name="toy", node={"defaults": ["_classifier", "_self_"], "arch": "toy", "width": 4}
    )
    yield
    del KINDS["toy"]


@pytest.mark.slow
def test_a_network_kind_from_outside_the_package_trains_evaluates_and_exports(toy, image_folder, tmp_path):
    from catdog.evaluate import evaluate
    from catdog.export import export

    train_in_process(
        *tiny(image_folder, tmp_path, "model=toy", "model.width=6", "model.tta=true", drop=("model.",))
    )
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    hparams = load(ckpt)["hyper_parameters"]
    assert (hparams["arch"], hparams["width"]) == ("toy", 6)
    metrics = run_in_process(evaluate, "evaluate", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path}/eval")
    assert metrics["n_images"] == 10 and 0 <= metrics["val/acc"] <= 1 and "val/ece" in metrics
    for fmt in ("onnx", "pt2"):  # export checks the exported model's answers against the checkpoint's
        assert export(str(ckpt), fmt, str(tmp_path / f"toy.{fmt}")).is_file()


def test_the_toy_kinds_keys_are_its_fields_and_a_wrong_one_names_them(toy):
    model = {"arch": "toy", "in_channels": 3, "resolution": 16}
    assert ModelSettings.from_config({**model, "width": 2}).net == ToySettings(3, 16, width=2)
    with pytest.raises(
        CatdogError, match=r"model.channels is not a setting of model: a convnet key, and model.arch=toy"
    ):
        ModelSettings.from_config({**model, "channels": [4]})
    with pytest.raises(CatdogError, match=r"model.whiten=true does not apply to model.arch=toy"):
        ModelSettings.from_config({**model, "whiten": True})
    with pytest.raises(CatdogError, match=r"model.arch=tiy is not a network kind \(did you mean toy\?\)"):
        ModelSettings.from_config({**model, "arch": "tiy"})


# --- the residual network ---


def test_resnet_keys_are_checked_and_a_convnet_key_names_the_card():
    model = {"arch": "resnet", "in_channels": 3, "resolution": 16}
    spec = ModelSettings.from_config({**model, "channels": [4, 8], "stride": [1, 2], "whiten": True})
    assert spec.net.feature_sides(16) == [16, 8] and spec.net.min_resolution() == 1
    with pytest.raises(CatdogError, match=r"model.kernel=4 is invalid: expected an odd positive integer"):
        ModelSettings.from_config({**model, "kernel": 4})
    with pytest.raises(CatdogError, match=r"data.resolution=3 is too small for model.stride=\[2, 2\]"):
        ModelSettings.from_config(
            {**model, "channels": [4, 8], "stride": 2, "downsample": "pool", "resolution": 3}
        )
    with pytest.raises(
        CatdogError,
        match=r"model.hidden is not a setting of model: a convnet key, and model.arch=resnet \(model=resnet picks "
        r"resnet's card without it\). resnet's keys \(model.arch=resnet\): model.channels, model.blocks",
    ):
        ModelSettings.from_config({**model, "hidden": [8]})


def test_a_presets_convnet_keys_under_resnet_are_one_error_with_the_overrides_that_remove_them():
    from helpers import ROOT
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        preset = compose("train", overrides=["experiment=fast", "model=resnet"])
        with pytest.raises(CatdogError) as caught:
            ModelSettings.from_config(OmegaConf.to_container(preset.model, resolve=True))
        message = str(caught.value)
        removal = message.split("Remove them for resnet: ")[1].split(". ")[0].split()
        assert removal == [
            f"~model.{k}" for k in ("convs_per_stage", "head", "hidden", "padding", "pool_after_conv")
        ]
        # fast's four widths need a stride per stage: the architectures benchmark's resnet
        fixed = compose(
            "train", overrides=["experiment=fast", "model=resnet", *removal, "model.stride=[1,2,2,2]"]
        )
    spec = ModelSettings.from_config(OmegaConf.to_container(fixed.model, resolve=True))
    assert spec.net.feature_sides(64) == [64, 32, 16, 8]


def test_model_arch_on_the_command_line_picks_the_kinds_card(tmp_path):
    from catdog.overrides import read_overrides

    assert read_overrides(["model.arch=resnet", "model.arch=convnet,resnet", "model.arch=a.b.Settings"]) == [
        "model=resnet",
        "model=convnet,resnet",
        "model.arch=a.b.Settings",
    ]


@pytest.mark.slow
def test_resnet_trains_resumes_evaluates_predicts_explains_exports_and_serves(image_folder, tmp_path):
    import catdog
    from catdog.evaluate import evaluate
    from catdog.export import export
    from catdog.inference import Predictor
    from catdog.predict import run as predict
    from catdog.runtime import load as load_onnx

    net = ["model=resnet", "model.channels=[4,8]", "model.stride=[1,2]", "model.augment={hflip:true}"]
    train_in_process(*tiny(image_folder, tmp_path, *net, "model.channels_last=true"))
    train_in_process(
        *tiny(image_folder, tmp_path, *net, "model.channels_last=true", "trainer.max_epochs=2"),
        "ckpt_path=last",
    )
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = load(ckpt)
    assert state["hyper_parameters"]["arch"] == "resnet" and state["epoch"] == 1
    assert any("running_mean" in k for k in state["state_dict"])  # batch norm, the card's default

    metrics = run_in_process(
        evaluate, "evaluate", f"ckpt_path={ckpt}", "robustness=true", f"hydra.run.dir={tmp_path}/eval"
    )
    assert "val/ece" in metrics and any(k.startswith("robustness/") for k in metrics), sorted(metrics)

    photos = write_class_folders(tmp_path / "photos", per_class=2)
    run_in_process(
        predict,
        "predict",
        f"ckpt_path={ckpt}",
        f"inputs={photos}",
        "explain=true",
        f"output={tmp_path}/pred/predictions.csv",
        f"hydra.run.dir={tmp_path}/pred",
    )
    overlays = sorted((tmp_path / "pred" / "explanations").rglob("*.png"))
    assert len(overlays) == 4
    predictor = Predictor.from_checkpoint(ckpt)
    images = np.stack([predictor.image(make_image(i % 2, seed=50 + i, size=(50, 40))) for i in range(8)])
    heat = predictor.heatmaps(images)
    assert heat.shape == (8, 16, 16) and heat.max() == pytest.approx(1.0)

    onnx = export(str(ckpt), "onnx", str(tmp_path / "resnet.onnx"))
    int8 = export(str(ckpt), "onnx", str(tmp_path / "resnet.onnx"), "int8", images)
    assert export(str(ckpt), "pt2", str(tmp_path / "resnet.pt2")).is_file()
    expected = catdog.load(ckpt).probabilities(images)
    np.testing.assert_allclose(load_onnx(onnx).probabilities(images), expected, atol=1e-4)
    assert np.abs(load_onnx(int8).probabilities(images) - expected).max() < 0.2


@pytest.mark.slow
def test_resnet_serves_with_grad_cam(image_folder, tmp_path):
    import base64

    import cv2
    from test_serve import jpeg, post, start_server, stop

    net = ["model=resnet", "model.channels=[4,8]", "model.stride=[1,2]"]
    train_in_process(*tiny(image_folder, tmp_path, *net))
    proc, url = start_server(tmp_path / "run" / "checkpoints" / "last.ckpt", tmp_path / "serve")
    try:
        status, answer = post(url, {"file": ("cat.jpg", jpeg(0, seed=12))}, query="?explain=true")
    finally:
        stop(proc)
    png = base64.b64decode(answer["heatmap"].removeprefix("data:image/png;base64,"))
    assert status == 200 and cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).shape == (
        120,
        160,
        3,
    )


@pytest.mark.slow
def test_resnet_audits(tmp_path):
    from test_audit import audit_overrides

    from catdog.audit.__main__ import audit

    root = write_class_folders(tmp_path / "PetImages", per_class=12)
    # the audit's preset is the ConvNet's (experiment=fast): without it (and its augment dict), resnet's card
    drop = ("trainer.max_epochs", "model.augment")
    overrides = [o for o in audit_overrides(root, tmp_path) if not o.startswith(drop)]
    rows = run_in_process(
        audit,
        "audit",
        *overrides,
        "~experiment",
        "model=resnet",
        "model.stride=[1,2]",
        "trainer.max_epochs=2",
    )
    assert len(rows) == 24


@pytest.mark.slow
def test_a_sweep_over_both_kinds_is_one_summary(image_folder, tmp_path):
    """Each kind's card at its defaults (40 px: the ConvNet's three valid 5x5 convs need 36 or more)."""
    drop = ("hydra.run.dir", "model.", "data.resolution")
    overrides = [o for o in tiny_overrides(image_folder, tmp_path) if not o.startswith(drop)]
    run_train(
        "-m",
        "model.arch=convnet,resnet",
        "data.resolution=40",
        f"hydra.sweep.dir={tmp_path}/sweep",
        *overrides,
    )
    sweep = tmp_path / "sweep"
    header, *rows = (line.split(",") for line in (sweep / "summary.csv").read_text().splitlines())
    assert header[1] == "model" and [r[1] for r in rows] == ["convnet", "resnet"]
    assert [r[header.index("status")] for r in rows] == ["ok", "ok"]
    cards = [OmegaConf.load(p).model.arch for p in sorted(sweep.glob("*/.hydra/config.yaml"))]
    assert cards == ["convnet", "resnet"]


def test_a_checkpoint_without_arch_loads_as_a_convnet(tmp_path):
    from catdog.checkpoint import load_classifier
    from catdog.models.classifier import ImageClassifier

    model = ImageClassifier(3, 16, channels=[4, 8], kernel=3, hidden=[16])
    hparams = dict(model.hparams)
    assert hparams.pop("arch") == "convnet"  # recorded, and left out below as before model.arch existed
    path = tmp_path / "old.ckpt"
    torch.save({"hyper_parameters": hparams, "state_dict": model.state_dict()}, path)
    loaded = load_classifier(path)
    assert loaded.hparams.arch == "convnet" and loaded.net.stage_ends == model.net.stage_ends
    x = torch.randint(0, 255, (2, 3, 16, 16), dtype=torch.uint8)
    torch.testing.assert_close(loaded(x), model.eval()(x))


def test_picking_and_checking_a_kind_imports_no_torch():
    import subprocess
    import sys

    code = (
        "import sys; from catdog.models.settings import ModelSettings; "
        "ModelSettings.from_config({'arch': 'resnet', 'in_channels': 3, 'resolution': 16, 'channels': [4, 8], "
        "'stride': [1, 2]}); ModelSettings.from_config({'in_channels': 3, 'resolution': 64}); "
        "print(sorted(m for m in ('torch', 'pytorch_lightning') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
