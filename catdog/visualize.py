"""Pictures of what a network does, for TensorBoard and reports: image grids, confusion matrices, mistakes.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so they work on machines without a display
and never change the process's matplotlib backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pytorch_lightning.loggers import TensorBoardLogger


def tensorboard_writer(trainer: pl.Trainer):
    """The SummaryWriter of the run's TensorBoard logger; None when the run logs elsewhere (or not at all)."""
    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger):
            return lg.experiment
    return None


def normalize_each(x: torch.Tensor) -> torch.Tensor:
    """Each image of (N, C, H, W) stretched to [0, 1] on its own, so faint ones are visible too."""
    x = x.detach().float().cpu()
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-8)


def tile(images: torch.Tensor, min_side: int = 48, pad: int = 1) -> torch.Tensor:
    """(N, C, h, w) images in [0, 1] as one (C, H, W) grid, near-square, small images enlarged (nearest)."""
    n, c, h, w = images.shape
    scale = max(1, math.ceil(min_side / max(h, w)))
    images = images.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    h, w = h * scale, w * scale
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = torch.ones(c, rows * (h + pad) + pad, cols * (w + pad) + pad)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[
            :, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w
        ] = images[i]
    return grid


def kernel_grid(weight: torch.Tensor) -> torch.Tensor:
    """A conv layer's kernels (out, in, k, k) as a grid: RGB tiles for 3 input channels, else their mean."""
    kernels = weight if weight.shape[1] == 3 else weight.mean(1, keepdim=True)
    return tile(normalize_each(kernels))


def feature_grid(features: torch.Tensor) -> torch.Tensor:
    """One image's feature maps (C, h, w) as a grid of C grey tiles."""
    return tile(normalize_each(features.unsqueeze(1)))


def _show(ax, image: np.ndarray) -> None:
    """An (H, W, C) uint8 image on an axis, grey when it has one channel."""
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])


def confusion_figure(matrix: np.ndarray, classes: Sequence[str], title: str = "Confusion matrix") -> Figure:
    """Counts, with true classes as rows and predicted classes as columns."""
    n = len(classes)
    fig = Figure(figsize=(2.2 + 0.7 * n, 1.8 + 0.7 * n), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45 if n > 4 else 0)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    high = matrix.max() / 2 if matrix.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{int(matrix[i, j]):,}",
                ha="center",
                va="center",
                color="white" if matrix[i, j] > high else "black",
            )
    fig.tight_layout()
    return fig


def mistakes_figure(
    images: np.ndarray,
    true: Sequence[int],
    pred: Sequence[int],
    prob: Sequence[float],
    classes: Sequence[str],
    heatmaps: np.ndarray | None = None,
) -> Figure:
    """Misclassified (H, W, C) uint8 images, titled with the true class and the wrong guess's probability; with
    `heatmaps` (N, H, W), each beside the Grad-CAM overlay of the wrong guess."""
    from catdog.explain.gradcam import overlay

    n = max(len(images), 1)
    per = 1 if heatmaps is None else 2
    cols = min(n, 4 if per == 1 else 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(2.2 * cols * per, 2.6 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for i, image in enumerate(images):
        ax = fig.add_subplot(rows, cols * per, i * per + 1)
        _show(ax, image)
        ax.set_title(f"true {classes[true[i]]}\npred {classes[pred[i]]} {prob[i]:.2f}", fontsize=9)
        if heatmaps is not None:
            ax = fig.add_subplot(rows, cols * per, i * per + 2)
            _show(ax, overlay(image, heatmaps[i]))
            ax.set_title(f"where it saw\n{classes[pred[i]]}", fontsize=9)
    if not len(images):
        fig.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    fig.tight_layout()
    return fig
