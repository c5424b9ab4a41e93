"""airbench's whitened first layer: decorrelating filters from the training patches, kept fixed in training."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import make_image, tiny_overrides, train_in_process

from catdog.errors import CatdogError
from catdog.models.classifier import ImageClassifier
from catdog.models.whiten import first_conv, init_whitening

NET = {"channels": [8, 8], "kernel": 3, "padding": "same", "head": "gap", "hidden": []}


def sample_images(n: int = 24) -> np.ndarray:
    return np.stack([make_image(i % 2, seed=i, size=(16, 16)) for i in range(n)])


def test_filters_decorrelate_the_training_patches():
    model = ImageClassifier(3, 16, **NET, whiten=True, normalize=True, mean=[0.5] * 3, std=[0.25] * 3)
    images = sample_images()
    init_whitening(model.net, images)
    conv = first_conv(model.net)
    x = model.net[0](torch.from_numpy(images).permute(0, 3, 1, 2))
    out = F.conv2d(x, conv.weight)  # every full patch, as the statistics were taken
    flat = out.permute(1, 0, 2, 3).reshape(8, -1).double()
    moments = flat @ flat.T / flat.shape[1]
    # the 4 strongest components: unit second moment, uncorrelated; the other 4 filters are their negatives
    assert torch.allclose(moments[:4, :4], torch.eye(4, dtype=torch.float64), atol=0.02)
    assert torch.equal(conv.weight[4:], -conv.weight[:4])


def test_the_first_conv_stays_fixed_while_the_rest_trains():
    model = ImageClassifier(3, 16, **NET, whiten=True)
    init_whitening(model.net, sample_images())
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.loss_fn(
        model(torch.from_numpy(sample_images()).permute(0, 3, 1, 2)), torch.arange(24) % 2
    ).backward()
    optimizer.step()
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    assert changed[0] is False and all(changed[1:])  # the first conv's weight is the first parameter


@pytest.mark.parametrize("channels", [[7, 8], [64, 8]])
def test_channels_that_cannot_hold_whole_components_are_one_message(channels):
    with pytest.raises(CatdogError, match=r"model.whiten=true: model.channels\[0\]=\d+ must be even"):
        ImageClassifier(3, 16, **{**NET, "channels": channels}, whiten=True)


@pytest.mark.slow
def test_a_run_trains_with_the_whitened_filters(image_folder, tmp_path):
    train_in_process(
        *tiny_overrides(image_folder, tmp_path),
        "data.channels=3",
        "model.whiten=true",
        "model.channels=[8,8]",
        "model.padding=same",
        "trainer.max_epochs=2",
    )
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    weight = checkpoint["state_dict"]["net.1.weight"]
    assert torch.equal(weight[4:], -weight[:4])  # set from the data, and not moved by 2 epochs of training


def test_the_config_check_names_impossible_channels_before_any_data_is_prepared():
    from helpers import ROOT
    from hydra import compose, initialize_config_dir

    from catdog.run.checks import validate

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "train", overrides=["data.source=/nonexistent", "model.whiten=true", "model.channels=[7,8]"]
        )
    with pytest.raises(CatdogError, match=r"model.channels\[0\]=7"):
        validate(cfg)
