"""Random resized crops, TrivialAugment and AugMix on whole float batches (N, C, H, W) in [0, 1], on their device.

Every image draws its own op and magnitude; the ops run once per kind on the images that drew it (a loop over the
14 kinds, never over images), and all geometric ops, the crop included, are one bilinear resample per image
(reflected at the borders, as the robustness report's rotation is; the images are square, so rotations in the
[-1, 1] coordinates are true rotations). Colour, contrast, posterize, solarize and equalize are kornia's
PIL-equivalent ops, which take one factor per image (brightness, sharpness and autocontrast are a line or two here).
kornia's own TrivialAugment/RandAugment draw one op for a whole batch, so the policies are written on its ops.

Magnitudes are fractions in [0, 1] of RandAugment's standard maxima (MAX): shear 0.3, translation 0.45 of the side,
rotation 30 degrees, brightness/colour/contrast/sharpness factors 1 +- 0.9, posterize down to 4 bits, solarize down
to threshold 0. Magnitude 0 is the identity for every op but autocontrast and equalize, which have none.
"""

from __future__ import annotations

import math

import kornia.enhance as E
import kornia.filters
import torch
import torch.nn.functional as F

from catdog.models.augment_settings import AugMix, ResizedCrop

MAX = {"shear": 0.3, "translate": 0.45, "rotate": math.radians(30), "enhance": 0.9, "posterize": 4}
GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")
SIGNED = (*GEOMETRIC, "brightness", "color", "contrast", "sharpness")
# TrivialAugment's ops (Mueller & Hutter 2021), in RandAugment's standard space
TRIVIAL_OPS = (
    "identity",
    *GEOMETRIC,
    "brightness",
    "color",
    "contrast",
    "sharpness",
    "posterize",
    "solarize",
    "autocontrast",
    "equalize",
)
# AugMix's default ops: those that overlap ImageNet-C's corruptions (brightness, colour, contrast, sharpness) are left
# out, as in the paper, so the robustness report does not test what was trained on
AUGMIX_OPS = ("autocontrast", "equalize", "posterize", "rotate", "solarize", *GEOMETRIC[:4])


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    """Each channel of each image stretched to [0, 1] (PIL's autocontrast without cutoff; flat channels kept)."""
    low, high = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    flat = high <= low
    return torch.where(flat, x, (x - low) / torch.where(flat, 1.0, high - low))


def sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance.Sharpness: blended with its SMOOTH filter ([[1,1,1],[1,5,1],[1,1,1]] / 13, the border
    pixels kept), as kornia's sharpness, whose grouped conv2d took 2.6 ms for 5 images here (avg_pool: ~0.1)."""
    smooth = (F.avg_pool2d(x, 3, stride=1) * 9 + 4 * x[:, :, 1:-1, 1:-1]) / 13
    smooth = F.pad(smooth, (1, 1, 1, 1))
    inner = torch.zeros_like(x[:1, :1], dtype=torch.bool)
    inner[:, :, 1:-1, 1:-1] = True
    smooth = torch.where(inner, smooth, x)
    return smooth.lerp(x, factor.view(-1, 1, 1, 1))  # exactly x at factor 1


def _enhance(fn):
    return lambda x, m: fn(x, 1 + MAX["enhance"] * m).clamp(0, 1)


# op -> f(images, signed magnitudes in [-1, 1] or [0, 1]); PIL's ImageEnhance factors 1 + 0.9 m
COLOR_OPS = {
    "brightness": _enhance(lambda x, f: x * f.view(-1, 1, 1, 1)),
    "color": _enhance(E.adjust_saturation_with_gray_subtraction),
    "contrast": _enhance(E.adjust_contrast_with_mean_subtraction),
    "sharpness": _enhance(sharpness),
    "posterize": lambda x, m: E.posterize(x, (8 - (MAX["posterize"] * m).round()).long()),
    # PIL inverts the 8-bit levels >= threshold: 256 (none) at magnitude 0 down to 0 (all)
    "solarize": lambda x, m: E.solarize(x, 256 * (1 - m) / 255),
    "autocontrast": lambda x, m: autocontrast(x),
    "equalize": lambda x, m: E.equalize(x),
}


def geometric_matrices(names: tuple[str, ...], op: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) maps from output to input coordinates ([-1, 1] both ways) of each image's op; identity for an
    image whose op is not geometric (op -1 is no op)."""
    n, dev = op.shape[0], op.device
    t = torch.eye(3, device=dev).repeat(n, 1, 1)

    def drew(name: str) -> torch.Tensor:
        return op == names.index(name) if name in names else torch.zeros(n, dtype=torch.bool, device=dev)

    zero = torch.zeros_like(m)
    t[:, 0, 1] = torch.where(drew("shear_x"), MAX["shear"] * m, zero)
    t[:, 1, 0] = torch.where(drew("shear_y"), MAX["shear"] * m, zero)
    # translation by a fraction of the side: 2 in these coordinates
    t[:, 0, 2] = torch.where(drew("translate_x"), 2 * MAX["translate"] * m, zero)
    t[:, 1, 2] = torch.where(drew("translate_y"), 2 * MAX["translate"] * m, zero)
    angle = torch.where(drew("rotate"), MAX["rotate"] * m, zero)
    rotated = drew("rotate").view(-1, 1, 1)
    rotation = torch.stack([angle.cos(), -angle.sin(), angle.sin(), angle.cos()], 1).view(n, 2, 2)
    t[:, :2, :2] = torch.where(rotated, rotation, t[:, :2, :2])
    return t


def crop_matrices(n: int, crop: ResizedCrop, device: torch.device) -> torch.Tensor:
    """(N, 3, 3) maps of random crops of `crop.scale` of the area at aspect `crop.ratio` (sides clamped to the
    image, where torchvision retries), placed uniformly inside the image."""
    area = torch.empty(n, device=device).uniform_(*crop.scale)
    ratio = torch.empty(n, device=device).uniform_(*map(math.log, crop.ratio)).exp()
    w, h = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
    t = torch.zeros(n, 3, 3, device=device)
    t[:, 0, 0], t[:, 1, 1], t[:, 2, 2] = w, h, 1
    t[:, 0, 2] = (torch.rand(n, device=device) * 2 - 1) * (1 - w)
    t[:, 1, 2] = (torch.rand(n, device=device) * 2 - 1) * (1 - h)
    return t


def warp(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Each image resampled (bilinear, borders reflected) through its map; images whose map is the identity are
    left alone, bit for bit."""
    moved = (t - torch.eye(3, device=t.device)).abs().amax((1, 2)) > 0
    idx = moved.nonzero().squeeze(1)
    if len(idx) == 0:
        return x
    everyone = len(idx) == len(x)  # a crop moves every image: no gather and scatter
    sub = x if everyone else x[idx]
    grid = F.affine_grid(t[idx, :2], list(sub.shape), align_corners=False)
    out = F.grid_sample(sub, grid, padding_mode="reflection", align_corners=False)
    return out if everyone else x.index_copy(0, idx, out)


def color_ops(x: torch.Tensor, names: tuple[str, ...], op: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Image i gets op names[op[i]] at magnitude m[i] if it is a colour op (op -1: none); written back in one copy
    (one per op cost 9 copies of the batch, 45% of TrivialAugment's time)."""
    done = []
    for name, fn in COLOR_OPS.items():
        if name in names:
            idx = (op == names.index(name)).nonzero().squeeze(1)
            if len(idx):
                done.append((idx, fn(x[idx], m[idx])))
    if not done:
        return x
    return x.index_copy(0, torch.cat([i for i, _ in done]), torch.cat([v for _, v in done]))


def draw_ops(
    names: tuple[str, ...], n: int, strength: float, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """One op per image, uniformly, and its magnitude: uniform in [0, strength], a random sign for signed ops."""
    op = torch.randint(len(names), (n,), device=device)
    m = torch.rand(n, device=device) * strength
    signed = torch.tensor([name in SIGNED for name in names], device=device)[op]
    flip = signed & (torch.rand(n, device=device) < 0.5)
    return op, torch.where(flip, -m, m)


def crop_and_trivial_augment(x: torch.Tensor, crop: ResizedCrop | None, strength: float) -> torch.Tensor:
    """A random resized crop (if `crop`), then TrivialAugment at `strength` (if > 0): one resample for both."""
    n = x.shape[0]
    pre = crop_matrices(n, crop, x.device) if crop else None
    if strength:
        op, m = draw_ops(TRIVIAL_OPS, n, strength, x.device)
    else:
        op, m = torch.full((n,), -1, device=x.device), torch.zeros(n, device=x.device)
    t = geometric_matrices(TRIVIAL_OPS, op, m)
    return color_ops(warp(x, t if pre is None else pre @ t), TRIVIAL_OPS, op, m)


def blur(x: torch.Tensor, largest: float) -> torch.Tensor:
    """Half the images (a coin flip each) Gaussian-blurred, each with its own sigma drawn uniformly up to `largest`
    of the side, borders reflected as in the robustness report's blur (OpenCV's default border; kornia's
    separable blur matches cv2.GaussianBlur to 3e-7 here)."""
    n, side = x.shape[0], x.shape[-1]
    idx = (torch.rand(n, device=x.device) < 0.5).nonzero().squeeze(1)
    if len(idx) == 0:
        return x
    sigma = (torch.rand(len(idx), device=x.device) * largest * side).clamp(min=1e-3)
    size = 2 * math.ceil(3 * largest * side) + 1  # +-3 of the largest sigma
    blurred = kornia.filters.gaussian_blur2d(x[idx], size, sigma.unsqueeze(1).expand(-1, 2))
    return x.index_copy(0, idx, blurred)


def augmix(x: torch.Tensor, spec: AugMix) -> torch.Tensor:
    """AugMix's mixing without its Jensen-Shannon consistency loss (which triples the forward passes): each image
    blended with a Dirichlet-weighted mix of `width` chains of 1..`depth` random ops."""
    n, dev = x.shape[0], x.device
    alpha = torch.full((n,), spec.alpha, device=dev)
    weights = torch.distributions.Dirichlet(alpha.new_full((n, spec.width), spec.alpha)).sample()
    keep = torch.distributions.Beta(alpha, alpha).sample().view(-1, 1, 1, 1)
    mixed = torch.zeros_like(x)
    for k in range(spec.width):
        depth = torch.randint(1, spec.depth + 1, (n,), device=dev)
        steps = [draw_ops(AUGMIX_OPS, n, spec.severity, dev) for _ in range(spec.depth)]
        steps = [(torch.where(step < depth, op, -1), m) for step, (op, m) in enumerate(steps)]
        # the chain's geometric ops composed into one resample (earlier ops on the left), then its colour ops: 3
        # resamples per batch instead of 9 (the colour ops commute with them but for the borders' statistics)
        t = torch.eye(3, device=dev).expand(n, 3, 3)
        for op, m in steps:
            t = t @ geometric_matrices(AUGMIX_OPS, op, m)
        chain = warp(x, t)
        for op, m in steps:
            chain = color_ops(chain, AUGMIX_OPS, op, m)
        mixed = mixed + weights[:, k].view(-1, 1, 1, 1) * chain
    return keep * x + (1 - keep) * mixed
