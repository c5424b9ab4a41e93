"""The sample grid: the training images with their labels, as samples.png and in TensorBoard."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
from helpers import tiny_datamodule
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from catdog.callbacks.samples import LABEL_HEIGHT, SampleGrid, make_grid


def test_grid_has_one_row_per_class_and_the_images_pixels():
    images = np.stack([np.full((8, 8, 1), 10 * i, np.uint8) for i in range(5)])
    labels = np.array([0, 1, 0, 1, 1])
    grid = make_grid(images, labels, ["cat", "dog"], tile=16)
    cell_h, cell_w = 16 + LABEL_HEIGHT + 2, 16 + 2
    assert grid.shape == (2 * cell_h, 3 * cell_w, 3) and grid.dtype == np.uint8
    first_dog = grid[cell_h + 1 + LABEL_HEIGHT : 2 * cell_h - 1, 1 : cell_w - 1]
    assert (first_dog == 10).all()  # image 1, scaled up, grey to RGB
    assert grid[1:LABEL_HEIGHT, 1 : cell_w - 1].min() == 0  # the label is written in black on white
    assert (grid[:cell_h, 2 * cell_w :] == 0).all()  # the cat row has two images, padded to the dog row


def test_callback_saves_samples_png_and_logs_it_to_tensorboard(image_folder, tmp_path):
    dm = tiny_datamodule(image_folder, tmp_path / "c")
    tb = TensorBoardLogger(str(tmp_path / "run"), name="tensorboard", version="")
    csv = CSVLogger(str(tmp_path / "run"), name="csv")
    trainer = SimpleNamespace(
        datamodule=dm, is_global_zero=True, default_root_dir=str(tmp_path), loggers=[csv, tb], global_step=0
    )
    SampleGrid(output_dir=str(tmp_path / "run"), per_class=3, tile=32).on_train_start(trainer, None)
    saved = cv2.cvtColor(cv2.imread(str(tmp_path / "run" / "samples.png")), cv2.COLOR_BGR2RGB)
    assert saved.shape == (2 * (32 + LABEL_HEIGHT + 2), 3 * (32 + 2), 3)
    first = np.sort(dm.splits["train"][dm.arrays.labels[dm.splits["train"]] == 0])[0]
    tile = saved[1 + LABEL_HEIGHT : 1 + LABEL_HEIGHT + 32, 1:33]
    expected = cv2.resize(np.asarray(dm.arrays.images[first]), (32, 32), interpolation=cv2.INTER_NEAREST)
    assert np.abs(tile.astype(int) - expected).max() <= 1
    tb.experiment.flush()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    assert "data/samples" in events.Tags()["images"]
