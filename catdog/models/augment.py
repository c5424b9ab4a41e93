"""Augmentation of whole uint8 batches on their device: every image draws its own parameters, no per-image loop.

Flips, shifts and brightness/contrast jitter work on the uint8 batch (what `fast` and `best` used before 0.4,
drawn in the same order); random resized crops, TrivialAugment and AugMix (policies.py) and mixup/cutmix work on
it as floats in [0, 1] and round back to uint8. mixup and cutmix also mix the labels: the batch then comes with
soft targets, one row of class weights per image. mixup/cutmix are written here on torch ops: kornia's CutMix took
19 ms a batch (2.9 here) and returns its labels in its own format.

Time per 64-image batch at 64 px, each with hflip (`python -m benchmarks augment` on one thread of a 2-core CPU,
fastest of 40 calls, machine under load): flips + translate 6 (fast) 3.7 ms, resized_crop 5.2, trivial_augment
8.5, resized_crop + trivial_augment 9.4, mixup 3.3, cutmix 2.9, augmix 45.5, against 162 ms for a fast training
step on the same thread: crop + TrivialAugment in place of fast's flips and shifts adds 3.5% to a step, AugMix 26%.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from catdog.models.augment_settings import AugmentSettings


def flip_shift_jitter(
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


def mix(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup: float, cutmix: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """mixup (Zhang et al. 2018; float images) and/or cutmix (Yun et al. 2019; any dtype) with a random partner
    each: with both, each image gets one of them, half and half. Returns the images and their soft targets: weight
    lam on the image's label, 1 - lam on its partner's, lam the kept share of the blend (mixup) or of the pixels
    (cutmix: the box clipped to the image)."""
    n, (h, w), dev = x.shape[0], x.shape[2:], x.device
    partner = torch.randperm(n, device=dev)
    other = x[partner]
    lam, out = torch.ones(n, device=dev), x
    if mixup:
        a = torch.full((n,), float(mixup), device=dev)
        lam = torch.distributions.Beta(a, a).sample()
        out = other.lerp(x, lam.view(-1, 1, 1, 1))
    if cutmix:
        a = torch.full((n,), float(cutmix), device=dev)
        side = (
            1 - torch.distributions.Beta(a, a).sample()
        ).sqrt()  # the box's sides: sqrt(1 - lam) of the image's
        cy, cx = torch.rand(n, device=dev) * h, torch.rand(n, device=dev) * w
        top, bottom = (cy - side * h / 2).round().clamp(0, h), (cy + side * h / 2).round().clamp(0, h)
        left, right = (cx - side * w / 2).round().clamp(0, w), (cx + side * w / 2).round().clamp(0, w)
        rows, cols = torch.arange(h, device=dev).view(1, h, 1), torch.arange(w, device=dev).view(1, 1, w)
        box = (rows >= top.view(-1, 1, 1)) & (rows < bottom.view(-1, 1, 1))
        box = box & (cols >= left.view(-1, 1, 1)) & (cols < right.view(-1, 1, 1))
        use_cut = torch.rand(n, device=dev) < 0.5 if mixup else torch.ones(n, dtype=torch.bool, device=dev)
        out = torch.where((box & use_cut.view(-1, 1, 1)).unsqueeze(1), other, out)
        lam = torch.where(use_cut, 1 - (bottom - top) * (right - left) / (h * w), lam)
    own, theirs = F.one_hot(y, num_classes).float(), F.one_hot(y[partner], num_classes).float()
    return out, theirs.lerp(own, lam.view(-1, 1))


def augment_batch(
    x: torch.Tensor, y: torch.Tensor, spec: AugmentSettings, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The uint8 batch augmented as `spec` says, and its soft targets (N, num_classes) when mixup/cutmix mixed the
    labels (else None: the labels `y` stand)."""
    x = flip_shift_jitter(x, spec.hflip, spec.translate, spec.brightness, spec.contrast)
    if not spec.needs_float:
        return mix(x, y, num_classes, 0, spec.cutmix) if spec.cutmix else (x, None)
    # policies.py (and kornia, 0.23 s of every train.py's start on a 2-core CPU) loads only when a run uses it
    from catdog.models.policies import augmix, blur, crop_and_trivial_augment

    # in float32 under bf16 autocast too: the result is rounded to 8 bits, which bf16 (8-bit mantissa) cannot hold
    with torch.autocast(x.device.type, enabled=False):
        xf, target = x.float().div_(255), None
        if spec.resized_crop or spec.trivial_augment:
            xf = crop_and_trivial_augment(xf, spec.resized_crop, spec.trivial_augment)
        if spec.blur:
            xf = blur(xf, spec.blur)
        if spec.augmix:
            xf = augmix(xf, spec.augmix)
        if spec.mixes_labels:
            xf, target = mix(xf, y, num_classes, spec.mixup, spec.cutmix)
        # + 0.5 and truncation: rounding at a quarter of torch.round's cost (0.9 vs 3.4 ms a 64x3x64x64 batch)
        return (xf * 255).add_(0.5).clamp_(0, 255).to(torch.uint8), target
