"""Starting from trained weights: init_from=PATH (a catdog .ckpt or a torch.save'd state_dict) loads the network's
weights only, makes the last layer anew for other classes, names the first layer that does not fit, model.freeze
keeps the first stages fixed; and resuming a checkpoint of another network is one line before any photo is decoded."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from helpers import epochs_done, tiny_overrides, train_in_process, write_class_folders

from catdog.errors import CatdogError

BATCHNORM = ["model.batchnorm=true"]


def last(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def net(state: dict) -> dict[str, torch.Tensor]:
    return {k[4:]: v for k, v in state["state_dict"].items() if k.startswith("net.")}


@pytest.fixture
def source_run(image_folder, tmp_path) -> Path:
    """A trained 2-class run (Cat, Dog) with batch norm: the weights to start from."""
    train_in_process(*tiny_overrides(image_folder, tmp_path / "source"), *BATCHNORM)
    return tmp_path / "source" / "run"


@pytest.mark.slow
def test_init_from_a_checkpoint_loads_the_weights_only_and_freeze_keeps_them(
    source_run, image_folder, tmp_path
):
    file = source_run / "checkpoints" / "last.ckpt"
    out = tmp_path / "tuned"
    train_in_process(*tiny_overrides(image_folder, out), *BATCHNORM, f"init_from={file}", "model.freeze=2")
    start, tuned = last(source_run), last(out / "run")
    # both conv stages frozen (layers 1, 2 and 5, 6: conv and batch norm): their weights and batch-norm statistics
    # are the file's (0 is the input scaling), the dense layers (10 and 12) trained on
    for key, value in net(start).items():
        same = torch.equal(net(tuned)[key], value)
        assert same == (key.split(".")[0] in {"0", "1", "2", "5", "6"}), key
    # the epoch counter and the optimizer start fresh: one epoch of 4 steps, not the source's and one more
    assert (epochs_done(tuned), tuned["global_step"]) == (1, 4)
    assert tuned["hyper_parameters"]["freeze"] == 2
    record = json.loads((out / "run" / "provenance.json").read_text())["init_from"]
    assert record == {"path": str(file), "classes": ["Cat", "Dog"], "last_layer": "loaded", "freeze": 2}
    assert tuned["catdog_provenance"]["init_from"] == record


@pytest.mark.slow
def test_other_classes_get_a_new_last_layer_and_the_log_says_so(source_run, tmp_path, caplog):
    three = write_class_folders(tmp_path / "three", per_class=8, classes=("Cat", "Dog", "Fox"))
    out = tmp_path / "three-run"
    # a bare state_dict of the classifier, as torch.save writes it
    file = tmp_path / "weights.pt"
    torch.save(last(source_run)["state_dict"], file)
    with caplog.at_level(logging.INFO, logger="catdog.run.weights"):
        train_in_process(*tiny_overrides(three, out), *BATCHNORM, f"init_from={file}", "model.freeze=1")
    assert any("last layer (12.bias, 12.weight) is made anew" in r.getMessage() for r in caplog.records)
    tuned = last(out / "run")
    assert net(tuned)["12.weight"].shape == (3, 16)
    assert torch.equal(net(tuned)["1.weight"], net(last(source_run))["1.weight"])  # the frozen first conv
    assert json.loads((out / "run" / "provenance.json").read_text())["init_from"]["last_layer"] == "new"


@pytest.mark.slow
def test_a_network_state_dict_with_the_same_class_count_keeps_its_last_layer(
    source_run, image_folder, tmp_path
):
    from catdog.checkpoint import load_classifier

    file = tmp_path / "net.pt"
    torch.save(load_classifier(source_run / "checkpoints" / "last.ckpt").net.state_dict(), file)
    out = tmp_path / "again"
    train_in_process(*tiny_overrides(image_folder, out), *BATCHNORM, f"init_from={file}", "model.freeze=2")
    assert torch.equal(net(last(out / "run"))["1.weight"], net(last(source_run))["1.weight"])
    assert json.loads((out / "run" / "provenance.json").read_text())["init_from"]["last_layer"] == "loaded"


@pytest.mark.slow
def test_a_layer_that_does_not_fit_is_named_with_the_setting_before_any_photo_is_decoded(
    source_run, image_folder, tmp_path
):
    file = source_run / "checkpoints" / "last.ckpt"
    out = tmp_path / "other"
    expected = r"init_from=\S+last\.ckpt: layer 1\.weight is \[4, 1, 3, 3\] in the file, \[4, 1, 5, 5\] here: it was trained with model\.kernel=3 \(this run: 5\)"
    with pytest.raises(CatdogError, match=expected):
        train_in_process(
            *tiny_overrides(image_folder, out), *BATCHNORM, f"init_from={file}", "model.kernel=5"
        )
    assert not (out / "cache").exists()


@pytest.mark.slow
def test_resuming_a_checkpoint_of_another_network_names_the_settings_before_any_photo_is_decoded(
    source_run, image_folder, tmp_path
):
    file = source_run / "checkpoints" / "last.ckpt"
    out = tmp_path / "other"
    overrides = [*tiny_overrides(image_folder, out), *BATCHNORM, f"ckpt_path={file}", "trainer.max_epochs=2"]
    with pytest.raises(CatdogError) as e:
        train_in_process(*overrides, "model.kernel=5", "model.channels=[4,6]")
    message = str(e.value)
    assert (
        "it was trained with model.channels=[4,8] (this run: [4,6]), model.kernel=3 (this run: 5)" in message
    )
    assert "Resume with the settings it was trained with (model.channels=[4,8] model.kernel=3)" in message
    assert "\n" not in message and not (out / "cache").exists()
    # with the checkpoint's settings it resumes
    train_in_process(*overrides)
    assert epochs_done(last(out / "run")) == 2


def test_init_from_with_ckpt_path_and_bad_values_are_config_errors(image_folder, tmp_path):
    from helpers import ROOT
    from hydra import compose, initialize_config_dir

    from catdog.run.checks import validate

    file = tmp_path / "w.pt"
    torch.save({"0.weight": torch.zeros(1)}, file)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):

        def problems(*overrides: str) -> str:
            with pytest.raises(CatdogError) as e:
                validate(
                    compose("train", overrides=[*tiny_overrides(image_folder, tmp_path)[:1], *overrides])
                )
            return str(e.value)

        assert "give one of them" in problems(f"init_from={file}", "ckpt_path=last")
        assert "no such file" in problems(f"init_from={tmp_path}/missing.ckpt")
        assert "model.freeze=4 is invalid" in problems("model.freeze=4")
        # best grows its images until epoch 16: two epochs would never train at data.resolution
        assert (
            "model.progressive_resize.until_epoch=16 needs trainer.max_epochs above it (it is 2)"
            in problems("experiment=best", "trainer.max_epochs=2")
        )
        assert "until_epoch=5 needs trainer.max_epochs above it" in problems(
            "model.head=gap", "model.progressive_resize={start:40,until_epoch:5}", "trainer.max_epochs=5"
        )
        validate(compose("train", overrides=[f"init_from={file}", "ckpt_path=auto"]))  # a requeued job's pair
        validate(
            compose("train", overrides=["experiment=best", "debug=fast_dev_run"])
        )  # a batch: runs at all?


def test_a_file_without_network_weights_is_named(tmp_path):
    from catdog.run.weights import read_weights

    file = tmp_path / "notes.pt"
    torch.save({"epochs": 3}, file)
    with pytest.raises(
        CatdogError, match=r"init_from=\S+notes\.pt: not a catdog checkpoint nor a network state_dict"
    ):
        read_weights(file)


def test_resuming_a_run_started_with_init_from_goes_on_from_its_own_checkpoint(tmp_path):
    from catdog.shell.rerun import restore_overrides

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(
        "- experiment=fast\n- init_from=/w/pets.ckpt\n- model.freeze=2\n"
    )
    resumed = restore_overrides([f"hydra.run.dir={run}", "ckpt_path=last", "trainer.max_epochs=4"])
    assert resumed == [
        "experiment=fast",
        "model.freeze=2",
        f"hydra.run.dir={run}",
        "ckpt_path=last",
        "trainer.max_epochs=4",
    ]
    # a requeued job (ckpt_path=auto) keeps it: with no checkpoint of its own yet, it starts from init_from
    assert "init_from=/w/pets.ckpt" in restore_overrides([f"hydra.run.dir={run}", "ckpt_path=auto"])
