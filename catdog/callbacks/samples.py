"""A labelled grid of training images, to check at a glance what the network is fed (orientation, colour, labels)."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytorch_lightning as pl

from catdog.io import replace_atomic
from catdog.visualize import tensorboard_writer

log = logging.getLogger(__name__)
LABEL_HEIGHT = 14


def make_grid(images: np.ndarray, labels: np.ndarray, classes: list[str], tile: int = 64) -> np.ndarray:
    """An RGB uint8 grid, one row per class, each image scaled to `tile` pixels under a strip with its class name."""
    rows = []
    for c, name in enumerate(classes):
        cells = []
        for img in images[labels == c]:
            img = cv2.resize(np.ascontiguousarray(img), (tile, tile), interpolation=cv2.INTER_NEAREST)
            img = np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img
            strip = np.full((LABEL_HEIGHT, tile, 3), 255, np.uint8)
            cv2.putText(
                strip, name[: tile // 7], (2, LABEL_HEIGHT - 3), cv2.FONT_HERSHEY_PLAIN, 0.8, (0, 0, 0), 1
            )
            cells.append(np.pad(np.vstack([strip, img]), ((1, 1), (1, 1), (0, 0))))
        if cells:
            rows.append(np.hstack(cells))
    width = max(r.shape[1] for r in rows)
    return np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows])


class SampleGrid(pl.Callback):
    """When training starts (or resumes), saves samples.png (training images with their labels) and logs it to TensorBoard."""

    def __init__(
        self, output_dir: str | None = None, per_class: int = 8, tile: int = 64, tag: str = "data/samples"
    ):
        self.output_dir, self.per_class, self.tile, self.tag = output_dir, per_class, tile, tag

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule  # type: ignore[attr-defined]  # set by Lightning's data connector
        if not trainer.is_global_zero or getattr(datamodule, "arrays", None) is None:
            return
        labels = datamodule.arrays.labels
        train = np.sort(datamodule.splits["train"])
        picked = np.concatenate(
            [train[labels[train] == c][: self.per_class] for c in range(datamodule.num_classes)]
        )
        grid = make_grid(datamodule.arrays.images[picked], labels[picked], datamodule.classes, self.tile)
        path = Path(self.output_dir or trainer.default_root_dir) / "samples.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        _, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
        # atomic: cv2.imwrite on a full disk leaves half a file and returns False
        replace_atomic(path, lambda f: f.write(png.tobytes()), binary=True)
        log.info("Sample images with their labels: %s", path)
        writer = tensorboard_writer(trainer)
        if writer is not None:
            writer.add_image(self.tag, grid, global_step=trainer.global_step, dataformats="HWC")
