"""TensorBoard shows what the network learned: kernels, feature maps, confusion matrix, mistakes."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_overrides, train_in_process, write_class_folders
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

from catdog.callbacks.features import stage_outputs
from catdog.models.convnet import build_convnet
from catdog.models.convnet_settings import ConvNetSettings
from catdog.visualize import kernel_grid, tile

IMAGE_TAGS = {
    "model/conv1_kernels",
    "features/input",
    "features/stage1",
    "features/stage2",
    "val/confusion_matrix",
    "val/misclassified",
}


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("callbacks")
    source = write_class_folders(tmp / "PetImages", per_class=12)
    train_in_process(
        *tiny_overrides(source, tmp), "trainer.max_epochs=2", "callbacks.feature_maps.every_n_epochs=1"
    )
    accumulator = EventAccumulator(str(tmp / "run" / "tensorboard"), size_guidance={IMAGES: 0})
    accumulator.Reload()
    return accumulator


@pytest.mark.slow
def test_training_logs_every_picture(events):
    assert IMAGE_TAGS <= set(events.Tags()["images"])
    steps = [e.step for e in events.Images("model/conv1_kernels")]
    assert len(steps) == 2 and steps[0] < steps[1]  # each epoch; the end of training is not logged twice
    assert len(events.Images("features/stage1")) == 2
    assert [e.step for e in events.Images("val/confusion_matrix")] == [steps[-1]]
    kernels = events.Images("model/conv1_kernels")[0]  # 4 kernels of 3x3, as a 2x2 grid of enlarged tiles
    assert kernels.width == kernels.height > 2 * 3 * 8


def test_stage_outputs_follow_the_conv_stack():
    spec = ConvNetSettings(3, 24, channels=[4, 8, 16], kernel=3, hidden=[8])
    outputs = stage_outputs(build_convnet(spec, 2), torch.zeros(1, 3, 24, 24, dtype=torch.uint8))
    assert [o.shape[1] for o in outputs] == [4, 8, 16]
    assert [o.shape[-1] for o in outputs] == spec.stage_sizes() == [11, 4, 1]


def test_grids():
    grid = tile(torch.rand(5, 1, 6, 6), min_side=12, pad=1)
    assert grid.shape == (1, 2 * 13 + 1, 3 * 13 + 1)  # 3 columns, 2 rows, tiles enlarged 2x
    rgb = kernel_grid(torch.randn(4, 3, 5, 5))
    # each kernel stretched to [0, 1] on its own: every tile reaches both ends
    # (5x5 kernels are enlarged 10x to 50x50 tiles, 1 pixel apart)
    tiles = rgb[:, 1:, 1:].unfold(1, 50, 51).unfold(2, 50, 51)
    assert rgb.shape[0] == 3 and tiles.shape[1:3] == (2, 2)
    assert [(float(t.min()), float(t.max())) for t in tiles.permute(1, 2, 0, 3, 4).flatten(0, 1)] == [
        (0, 1)
    ] * 4
    assert kernel_grid(torch.randn(4, 2, 5, 5)).shape[0] == 1
