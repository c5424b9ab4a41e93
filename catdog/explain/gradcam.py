"""Grad-CAM (Selvaraju et al., 2017): where in the photo the evidence for a class lies.

Written here rather than taken from the `grad-cam` package: that package imports torchvision when it is
imported, and PyPI's torchvision for torch 2.13 (0.28.0) is linked against the CUDA libraries, so it fails to
import beside the CPU build of torch this project pins ("operator torchvision::nms does not exist"). Every kind's
network is a Network (an nn.Sequential that names its default layer: catdog/models/network.py), so no hooks are
needed either: the net is cut in two at the chosen layer, and the gradient of the class score with respect to that
layer's output is one `torch.autograd.grad` call.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from catdog.errors import CatdogError
from catdog.io import path_within
from catdog.models.network import Network
from catdog.preprocessing import square


def resolve_layer(net: Network, layer: int | str | None) -> int:
    """`explain_layer`: None for the default, else the index of a layer of the net whose output is a feature
    map (the numbers `print(catdog.load(path).model.net)` shows)."""
    if layer is None or str(layer) in ("", "None", "null"):
        return net.explain_layer
    layers = net.feature_layers()
    try:
        index = int(layer)
    except (TypeError, ValueError):
        index = None
    if index not in layers:
        choices = ", ".join(f"{i} ({type(net[i]).__name__})" for i in layers)
        raise CatdogError(
            f"explain_layer={layer}: not a layer of the network's stages. Choose one of {choices}; "
            f"the default is {net.explain_layer}."
        )
    return index


def gradcam(
    net: Network,
    images: torch.Tensor,
    layer: int | str | None = None,
    target: torch.Tensor | None = None,
) -> torch.Tensor:
    """Heatmaps (N, H, W) in [0, 1] for uint8 images (N, C, H, W): Grad-CAM of the class `target`
    (default: the predicted class) at `layer` of `net`, resized to the image."""
    index = resolve_layer(net, layer)
    with torch.inference_mode(False), torch.enable_grad():
        # a clone made outside inference mode, so that autograd may save it (callers may be inside it)
        x = images.clone()
        features = net[: index + 1](x).detach().clone().requires_grad_(True)
        logits = net[index + 1 :](features)
        if target is None:
            target = logits.argmax(1)
        score = logits.gather(1, target.view(-1, 1).to(logits.device)).sum()
        (grads,) = torch.autograd.grad(score, features)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * features.detach()).sum(1, keepdim=True)).float()
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return cam / cam.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """An (H, W, C) uint8 image with a heatmap (h, w) in [0, 1] laid over it in the jet colours, RGB uint8."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    heat = cv2.resize(
        heatmap.astype(np.float32), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR
    )
    colours = cv2.cvtColor(
        cv2.applyColorMap((255 * heat.clip(0, 1)).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB
    )
    return cv2.addWeighted(rgb, 1 - alpha, colours, alpha, 0)


def display_image(
    data: bytes, fallback: np.ndarray, max_side: int = 512, resize: str = "squash"
) -> np.ndarray:
    """The part of the photo the network saw, RGB, longest side at most `max_side`: the whole photo in its own
    aspect ratio (data.resize=squash), its centre square (crop) or the letterboxed square (pad); `fallback` (the
    network's input) when OpenCV cannot decode it alone."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        return fallback
    if resize != "squash":
        image = square(image, min(max_side, (min if resize == "crop" else max)(image.shape[:2])), resize)
    scale = min(1.0, max_side / max(image.shape[:2]))
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


def overlay_png(image: np.ndarray, heatmap: np.ndarray) -> bytes:
    """`overlay` encoded as PNG bytes."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(overlay(image, heatmap), cv2.COLOR_RGB2BGR))
    if not ok:
        raise CatdogError(f"OpenCV could not encode a {image.shape} overlay as PNG.")
    return encoded.tobytes()


def explanation_path(folder: Path, relative: str) -> Path:
    """`folder/<input's relative path>.png`, the input's folders kept; never outside `folder`."""
    path = path_within(folder, relative)
    return path.with_name(f"{path.name}.png")
