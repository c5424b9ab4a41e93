"""Progressive resizing: smaller training batches in the first epochs, the target resolution at the end."""

from collections import defaultdict
from functools import partial

import pytest
import torch
from helpers import quiet_trainer, tiny_datamodule

from catdog.errors import CatdogError
from catdog.models.classifier import ImageClassifier
from catdog.models.resize import resize_batch, resolution_at

GAP_NET = {"channels": [4, 8], "kernel": 3, "padding": "same", "head": "gap", "hidden": []}


def test_schedule_grows_in_steps_and_ends_at_the_target():
    assert [resolution_at(e, 64, 48, 6) for e in range(8)] == [48, 48, 56, 56, 56, 64, 64, 64]
    assert [resolution_at(e, 96, 32, 4, multiple=32) for e in range(5)] == [32, 64, 64, 96, 96]
    assert resolution_at(0, 64, 64, 3) == 64


def test_training_batches_follow_the_schedule_and_validation_keeps_the_target(image_folder, tmp_path):
    dm = tiny_datamodule(image_folder, tmp_path / "cache", loader="tensor")
    model = ImageClassifier(
        3,
        16,
        dm.classes,
        **GAP_NET,
        optimizer=partial(torch.optim.Adam, lr=0.01),
        augment={"hflip": True, "translate": 2},
        progressive_resize={"start": 8, "until_epoch": 2, "multiple": 4},
    )
    sizes = defaultdict(set)

    def record(module, args):
        stage = "train" if module.training else "val"
        sizes[(stage, model.current_epoch)].add(tuple(args[0].shape[-2:]))

    model.register_forward_pre_hook(record)
    trainer = quiet_trainer(max_epochs=4, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    assert [sizes[("train", e)] for e in range(4)] == [{(8, 8)}, {(12, 12)}, {(16, 16)}, {(16, 16)}]
    assert all(sizes[("val", e)] == {(16, 16)} for e in range(4))
    assert trainer.callback_metrics["train/resolution"] == 16


def test_resizing_is_antialiased():
    # 1-pixel stripes: sampled without a low-pass filter they alias (values 25..230 at 5 px); filtered, all grey
    stripes = (torch.arange(16) % 2 * 255).to(torch.uint8).expand(1, 3, 16, 16)
    small = resize_batch(stripes, 5)
    assert small.shape == (1, 3, 5, 5) and small.dtype == torch.float32
    assert (small - 127.5).abs().max() < 10
    assert resize_batch(stripes, 16) is stripes


def test_a_flatten_head_or_a_bad_schedule_is_one_message():
    net = {**GAP_NET, "head": "flatten", "hidden": [8]}
    with pytest.raises(CatdogError, match="model.progressive_resize needs model.head=gap"):
        ImageClassifier(3, 16, **net, progressive_resize={"start": 8, "until_epoch": 2})
    with pytest.raises(CatdogError, match="model.progressive_resize.start=20"):
        ImageClassifier(3, 16, **GAP_NET, progressive_resize={"start": 20, "until_epoch": 2})
    with pytest.raises(CatdogError, match="model.progressive_resize.start=2: .* from 4"):
        ImageClassifier(3, 16, **GAP_NET, progressive_resize={"start": 2, "until_epoch": 2})
    with pytest.raises(CatdogError, match="give start and until_epoch"):
        ImageClassifier(3, 16, **GAP_NET, progressive_resize={"start": 8})


def test_the_config_check_stops_a_flatten_head_before_any_data_is_prepared():
    from helpers import ROOT
    from hydra import compose, initialize_config_dir

    from catdog.run.checks import validate

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["data.source=/nonexistent", "model.progressive_resize={start:32,until_epoch:2}"],
        )
    with pytest.raises(CatdogError, match="model.progressive_resize needs model.head=gap"):
        validate(cfg)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "train", overrides=["experiment=fast", "model.progressive_resize={start:48,until_epoch:5}"]
        )
    validate(cfg)
