"""Training options of the accuracy presets: fast data path, normalization, TTA, schedules."""

import pytest
import torch
from helpers import ROOT, quiet_trainer, tiny_datamodule
from hydra import compose, initialize_config_dir

from catdog.models.classifier import ImageClassifier

# batches of 7: the 30 training images of image_folder end in a partial batch, which every path must handle
BATCH = 7


def test_tensor_path_gives_the_same_batches_as_the_dataloader_path(image_folder, tmp_path):
    plain = tiny_datamodule(image_folder, tmp_path / "cache", batch_size=BATCH, seed=3)
    fast = tiny_datamodule(image_folder, tmp_path / "cache", batch_size=BATCH, seed=3, loader="tensor")
    epoch_images = []
    for epoch in range(2):  # the order changes per epoch in the same way
        plain_loader, fast_loader = plain.train_dataloader(), fast.train_dataloader()
        plain_loader.sampler.set_epoch(epoch)  # as Lightning's fit loop does before each epoch
        fast_loader.sampler.set_epoch(epoch)
        a_batches, b_batches = list(plain_loader), list(fast_loader)
        epoch_images.append(torch.cat([x for x, _ in a_batches]))
        assert len(a_batches) == len(b_batches) == len(plain.train_dataloader())
        for (xa, ya), (xb, yb) in zip(a_batches, b_batches):
            assert xa.shape == xb.shape == (len(ya), 3, 16, 16) and xa.dtype == torch.uint8
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
            assert xa.stride() == xb.stride() and xb.is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(*epoch_images)  # a new order in epoch 1
    loaders = plain.train_dataloader(), fast.train_dataloader()
    first = [next(iter(loader))[1] for loader in loaders]
    assert torch.equal(*first)
    for (xa, ya), (xb, yb) in zip(plain.val_dataloader(), fast.val_dataloader()):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_channel_stats_normalize_the_input_inside_the_model(image_folder, tmp_path):
    dm = tiny_datamodule(image_folder, tmp_path / "cache", batch_size=BATCH)
    stats = dm.channel_stats()
    model = ImageClassifier(
        3, 16, ["Cat", "Dog"], **dict(channels=[4], kernel=3, hidden=[]), normalize=True, **stats
    )
    x, _ = next(iter(dm.train_dataloader()))
    scaled = model.net[0](x)
    assert scaled.dtype == torch.float32
    expected = (x.float() / 255 - torch.tensor(stats["mean"]).view(1, 3, 1, 1)) / torch.tensor(
        stats["std"]
    ).view(1, 3, 1, 1)
    assert torch.allclose(scaled, expected)
    assert model.hparams.mean == stats["mean"]  # stored in checkpoints with the rest of the preprocessing


def test_channel_stats_are_the_samples_exact_mean_and_std(image_folder, tmp_path):
    import numpy as np

    dm = tiny_datamodule(image_folder, tmp_path / "cache", batch_size=BATCH)
    stats = dm.channel_stats()
    pixels = dm.train_sample().reshape(-1, 3).astype(np.float64) / 255.0  # every image: fewer than 5,000
    assert np.allclose(stats["mean"], pixels.mean(0), atol=1e-12)
    assert np.allclose(stats["std"], pixels.std(0) + 1e-6, atol=1e-12)


def test_channel_stats_sample_every_class(image_folder, tmp_path):
    """The training split's indices are grouped by class: a sample, not a prefix, sees both."""
    import dataclasses

    import numpy as np

    dm = tiny_datamodule(image_folder, tmp_path / "cache", batch_size=BATCH)
    black_cats = np.where(dm.arrays.labels[:, None, None, None] == 0, 0, 255).astype(np.uint8)
    dm.arrays = dataclasses.replace(dm.arrays, images=np.broadcast_to(black_cats, dm.arrays.images.shape))
    mean = dm.channel_stats(max_images=len(dm.splits["train"]) // 2)["mean"]
    assert all(0.2 < m < 0.8 for m in mean)  # one class alone would give 0 or 1


def test_tta_averages_the_probabilities_of_image_and_mirror():
    torch.manual_seed(0)
    model = ImageClassifier(1, 16, ["a", "b"], **dict(channels=[4], kernel=3, hidden=[8]), tta=True).eval()
    x = torch.randint(0, 256, (5, 1, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        expected = (model(x).softmax(1) + model(x.flip(3)).softmax(1)) / 2
        got = model.predict_logits(x).exp()
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, model(x).softmax(1))


@pytest.mark.parametrize("preset", ["tutorial", "fast", "best"])
def test_presets_compose_and_build(preset, tmp_path):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={preset}"], return_hydra_config=False)
    cfg.paths.output_dir = "unused"
    import hydra

    from catdog.run.speed import measure_speed_settings

    measure_speed_settings(
        cfg, tmp_path / "speed_settings.json", timer=lambda setting: 1.0
    )  # settles the presets' `auto` keys

    model = hydra.utils.instantiate(
        cfg.model,
        classes=["Cat", "Dog"],
        _convert_="all",
        **(
            {"mean": [0.5] * cfg.data.channels, "std": [0.25] * cfg.data.channels}
            if cfg.model.normalize
            else {}
        ),
    )
    x = torch.zeros(2, cfg.data.channels, cfg.data.resolution, cfg.data.resolution, dtype=torch.uint8)
    assert model(x).shape == (2, 2)
    assert cfg.data.resolution <= 96


@pytest.mark.parametrize("limit", [None, 4, 1])  # 4 steps at pct_start 0.25: torch's OneCycleLR divides by 0
def test_onecycle_schedule_gets_its_total_steps_from_the_trainer(image_folder, tmp_path, limit):

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["model/optimizer=adamw", "model/scheduler=onecycle"])
    import hydra

    dm = tiny_datamodule(image_folder, tmp_path / "cache", batch_size=BATCH)
    model = ImageClassifier(
        3,
        16,
        dm.classes,
        **dict(channels=[4], kernel=3, hidden=[8]),
        optimizer=hydra.utils.instantiate(cfg.model.optimizer),
        scheduler=hydra.utils.instantiate(cfg.model.scheduler),
    )
    epochs = 1 if limit else 2
    trainer = quiet_trainer(max_epochs=epochs, limit_train_batches=limit)
    trainer.fit(model, dm)
    scheduler = trainer.lr_scheduler_configs[0]
    assert scheduler.interval == "step"
    steps = epochs * (limit or len(dm.train_dataloader()))
    assert trainer.global_step == steps
    assert scheduler.scheduler.total_steps in (steps, steps + 1)


def test_training_runs_on_the_tensor_path(image_folder, tmp_path):

    dm = tiny_datamodule(image_folder, tmp_path / "cache", batch_size=BATCH, loader="tensor")
    model = ImageClassifier(
        3,
        16,
        dm.classes,
        **dict(channels=[4], kernel=3, hidden=[8]),
        optimizer=torch.optim.Adam,
        augment={"hflip": True, "translate": 2},
        tta=True,
    )
    trainer = quiet_trainer()
    trainer.fit(model, dm)
    assert trainer.global_step == len(dm.train_dataloader())
    assert {"val/acc", "train/loss"} <= set(trainer.callback_metrics)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("scheduler", ["cosine", "step", "onecycle"])
def test_every_optimizer_and_schedule_config_instantiates(optimizer, scheduler):
    import hydra

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"model/optimizer={optimizer}", f"model/scheduler={scheduler}"])
    params = [torch.nn.Parameter(torch.zeros(3))]
    opt = hydra.utils.instantiate(cfg.model.optimizer)(params=params)
    assert type(opt).__name__.lower() == optimizer
    extra = {"total_steps": 10} if scheduler == "onecycle" else {}
    sched = hydra.utils.instantiate(cfg.model.scheduler)(opt, **extra)
    first = opt.param_groups[0]["lr"]
    for _ in range(6):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] != first  # the schedule changes the learning rate


@pytest.mark.parametrize(
    ("accelerator", "cuda", "bf16", "expected"),
    [
        ("cpu", False, True, "bf16-mixed"),
        ("cpu", False, False, "32-true"),
        ("auto", False, False, "32-true"),
        ("gpu", True, True, "bf16-mixed"),
        ("gpu", True, False, "16-mixed"),
        ("auto", True, False, "16-mixed"),
    ],
)
def test_precision_auto_picks_bf16_only_where_the_chip_has_it(monkeypatch, accelerator, cuda, bf16, expected):
    from omegaconf import OmegaConf

    from catdog.run.hardware import resolve_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    trainer = OmegaConf.create({"accelerator": accelerator, "precision": "auto"})
    resolve_precision(trainer)
    assert trainer.precision == expected
    fixed = OmegaConf.create({"accelerator": accelerator, "precision": "32-true"})
    resolve_precision(fixed)
    assert fixed.precision == "32-true"  # an explicit choice is kept


def test_an_unknown_precision_is_one_message_naming_the_key():
    from omegaconf import OmegaConf

    from catdog.errors import CatdogError
    from catdog.run.hardware import resolve_precision

    with pytest.raises(CatdogError, match=r"trainer.precision=bogus: .*bf16-mixed.*, or auto"):
        resolve_precision(OmegaConf.create({"accelerator": "cpu", "precision": "bogus"}))


def test_bf16_channels_last_training_step_runs_on_cpu(image_folder, tmp_path):
    """The fast/best presets' CPU path: bf16 autocast with channels_last weights and inputs."""

    dm = tiny_datamodule(image_folder, tmp_path / "cache", batch_size=BATCH, loader="tensor")
    model = ImageClassifier(
        3,
        16,
        dm.classes,
        **dict(channels=[4, 8], kernel=3, padding="same", hidden=[], batchnorm=True, head="gap"),
        channels_last=True,
        optimizer=torch.optim.AdamW,
    )
    trainer = quiet_trainer(precision="bf16-mixed")
    trainer.fit(model, dm)
    assert trainer.global_step == len(dm.train_dataloader())
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert model.net[-1].weight.dtype == torch.float32  # autocast keeps float32 master weights
