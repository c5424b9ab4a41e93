"""Weight averaging: an EMA of the weights that validation, checkpoints, the end of training and a resume use."""

from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from helpers import ROOT, quiet_trainer, tiny_datamodule
from hydra import compose, initialize_config_dir

from catdog.callbacks.ema import EMA, averaging_first, decay_at
from catdog.compat import weight_average
from catdog.errors import CatdogError
from catdog.models.classifier import ImageClassifier


class Recorder(pl.Callback):
    """The first conv's weight after every optimizer step (raw) and while validating (what validation uses)."""

    def __init__(self):
        self.raw, self.validated, self.drawn = [], [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.raw.append(first_conv(pl_module).clone())

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self.validated.append(first_conv(pl_module).clone())

    def on_validation_epoch_end(self, trainer, pl_module):  # where the picture callbacks draw
        self.drawn.append(first_conv(pl_module).clone())

    def on_train_end(self, trainer, pl_module):
        self.drawn.append(first_conv(pl_module).clone())


def first_conv(module: torch.nn.Module) -> torch.Tensor:
    return next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d)).weight.detach()


def fit(folder, tmp_path, epochs: int, callbacks: list, ckpt_path=None, **data) -> ImageClassifier:
    pl.seed_everything(0)
    dm = tiny_datamodule(folder, tmp_path / "cache", **data)
    model = ImageClassifier(
        3,
        16,
        dm.classes,
        **{"channels": [4, 8], "kernel": 3, "hidden": [8], "batchnorm": True},
        optimizer=partial(torch.optim.Adam, lr=0.01),
    )
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last")
    trainer = quiet_trainer(
        max_epochs=epochs,
        callbacks=averaging_first([*callbacks, checkpoint]),
        enable_checkpointing=True,
        default_root_dir=tmp_path,
        deterministic=True,
    )
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model


def test_decay_warms_up_to_the_configured_value():
    assert decay_at(0, 0.999, warmup=True) == pytest.approx(0.1)
    assert decay_at(90, 0.999, warmup=True) == pytest.approx(91 / 100)
    assert decay_at(100_000, 0.999, warmup=True) == 0.999
    assert decay_at(0, 0.999, warmup=False) == 0.999
    with pytest.raises(CatdogError, match="callbacks.ema.decay=1.5"):
        EMA(decay=1.5)


def test_validation_checkpoints_and_the_final_model_use_the_average(image_folder, tmp_path):
    ema, recorder = EMA(decay=0.9), Recorder()
    model = fit(image_folder, tmp_path, epochs=2, callbacks=[recorder, ema])
    # the average, recomputed from the raw weights after every step: copied at the first, then decayed
    expected = recorder.raw[0]
    for n, raw in enumerate(recorder.raw[1:], start=1):
        expected = torch.lerp(expected, raw, 1 - decay_at(n, 0.9, warmup=True))
    assert torch.allclose(first_conv(ema.average_model), expected, atol=1e-6)
    assert not torch.allclose(expected, recorder.raw[-1], atol=1e-4)
    # the last validation saw the average, not the raw weights, and the model ends with the average
    assert torch.allclose(recorder.validated[-1], expected, atol=1e-6)
    assert all(torch.allclose(w, expected, atol=1e-6) for w in recorder.drawn[-2:])
    assert torch.allclose(first_conv(model), expected, atol=1e-6)
    # the checkpoint: the average as its state_dict (what evaluate/predict/export load), the raw weights beside it
    checkpoint = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert torch.allclose(checkpoint["state_dict"]["net.1.weight"], expected, atol=1e-6)
    assert torch.allclose(checkpoint["current_model_state"]["net.1.weight"], recorder.raw[-1])


def test_a_resumed_run_continues_the_average(image_folder, tmp_path):
    straight = EMA(decay=0.9)
    fit(image_folder, tmp_path / "a", epochs=2, callbacks=[straight])
    fit(image_folder, tmp_path / "b", epochs=1, callbacks=[EMA(decay=0.9)])
    resumed = EMA(decay=0.9)
    fit(
        image_folder,
        tmp_path / "b",
        epochs=2,
        callbacks=[resumed],
        ckpt_path=tmp_path / "b" / "ckpt" / "last.ckpt",
    )
    assert int(weight_average(resumed).n_averaged) == int(weight_average(straight).n_averaged) > 4
    for (name, a), b in zip(
        straight.average_model.state_dict().items(), resumed.average_model.state_dict().values()
    ):
        if a.is_floating_point():
            assert torch.allclose(a, b, atol=1e-5), name


def test_the_ema_callbacks_config_adds_the_callback_first():
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["callbacks=[default,ema]", "callbacks.ema.decay=0.99"])
    cfg.paths.output_dir = "unused"
    from catdog.run.training import instantiate_group

    callbacks = averaging_first(instantiate_group(cfg.callbacks))
    assert isinstance(callbacks[0], EMA) and callbacks[0].decay == 0.99
    assert len(callbacks) == len(cfg.callbacks)


def test_a_preset_adds_ema_through_its_defaults(tmp_path):
    import shutil

    configs = shutil.copytree(ROOT / "configs", tmp_path / "configs")
    (configs / "experiment" / "averaged.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /callbacks: [default, ema]\ncallbacks:\n  ema:\n    decay: 0.99\n"
    )
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=averaged"])
    assert cfg.callbacks.ema.decay == 0.99 and "model_checkpoint" in cfg.callbacks


class InterruptValidation(pl.Callback):
    """Ctrl-C in the middle of the first real validation, while the average is swapped in."""

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            raise KeyboardInterrupt


def test_an_interrupt_during_validation_saves_the_raw_weights_as_the_raw_weights(image_folder, tmp_path):
    from catdog.run.resume import SaveOnInterrupt

    ema, recorder = EMA(decay=0.9), Recorder()
    callbacks = [recorder, ema, InterruptValidation(), SaveOnInterrupt(str(tmp_path / "saved"))]
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        fit(image_folder, tmp_path, epochs=2, callbacks=callbacks)
    checkpoint = torch.load(tmp_path / "saved" / "last.ckpt", weights_only=False)
    assert torch.allclose(checkpoint["current_model_state"]["net.1.weight"], recorder.raw[-1])
    assert torch.allclose(checkpoint["state_dict"]["net.1.weight"], first_conv(ema.average_model))
    assert not torch.allclose(recorder.raw[-1], first_conv(ema.average_model), atol=1e-4)


class TestedWeights(pl.Callback):
    """The first conv's weight while testing."""

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.tested = first_conv(pl_module).clone()


def test_testing_a_checkpoint_after_fitting_scores_its_average_not_its_raw_weights(image_folder, tmp_path):
    # what test=true does: trainer.test(ckpt_path=best) in the process that fitted, the average still built
    tested = TestedWeights()
    model = fit(image_folder, tmp_path, epochs=2, callbacks=[EMA(decay=0.9), tested], test_fraction=0.25)
    path = tmp_path / "ckpt" / "last.ckpt"
    model.trainer.test(model, datamodule=model.trainer.datamodule, ckpt_path=str(path), verbose=False)
    checkpoint = torch.load(path, weights_only=False)
    assert torch.allclose(tested.tested, checkpoint["state_dict"]["net.1.weight"])
    assert not torch.allclose(tested.tested, checkpoint["current_model_state"]["net.1.weight"], atol=1e-4)
