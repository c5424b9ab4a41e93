"""Augmentation of whole uint8 batches on their device: one random draw per batch of images, no per-sample loop."""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from catdog.errors import CatdogError


def augment_batch(
    x: torch.Tensor, hflip: bool = True, translate: int = 0, brightness: float = 0.0, contrast: float = 0.0
) -> torch.Tensor:
    """Random horizontal flips, reflect-padded random crops (shifts up to `translate` px), brightness/contrast."""
    n = x.shape[0]
    if hflip:
        flip = torch.rand(n, device=x.device) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    if translate:
        h, w = x.shape[2:]
        padded = F.pad(x.float(), (translate,) * 4, mode="reflect")
        dy = torch.randint(0, 2 * translate + 1, (n,), device=x.device)
        dx = torch.randint(0, 2 * translate + 1, (n,), device=x.device)
        rows = (
            (dy.view(-1, 1) + torch.arange(h, device=x.device))
            .view(n, 1, h, 1)
            .expand(-1, x.shape[1], -1, w + 2 * translate)
        )
        padded = padded.gather(2, rows)
        cols = (
            (dx.view(-1, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(-1, x.shape[1], h, -1)
        )
        x = padded.gather(3, cols).to(x.dtype)
    if brightness or contrast:
        xf = x.float()
        if contrast:
            mean = xf.mean(dim=(1, 2, 3), keepdim=True)
            xf = (xf - mean) * (1 + (torch.rand(n, 1, 1, 1, device=x.device) * 2 - 1) * contrast) + mean
        if brightness:
            xf = xf + (torch.rand(n, 1, 1, 1, device=x.device) * 2 - 1) * brightness * 255
        x = xf.clamp(0, 255).to(x.dtype)
    return x


def check_augment(augment: Mapping | None, resolution: int) -> None:
    """Wrong model.augment values are named when the model is built, not at its first training step."""
    if augment is None:
        return
    keys = [k for k in inspect.signature(augment_batch).parameters if k != "x"]
    if not isinstance(augment, Mapping) or set(augment) - set(keys):
        raise CatdogError(
            f"model.augment={augment}: give a mapping of {', '.join(keys)}, e.g. {{hflip:true,translate:4}}."
        )
    if not 0 <= augment.get("translate", 0) < resolution:
        raise CatdogError(
            f"model.augment.translate={augment['translate']}: shifts must be 0 <= translate < data.resolution ({resolution})."
        )
