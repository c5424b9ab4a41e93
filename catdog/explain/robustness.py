"""Accuracy off the training distribution: the test images blurred, re-compressed, darkened, flattened,
rotated, zoomed and turned grey, each at a few severities (severity 0 is the clean image).

The corruptions act on the images as the network sees them (already at its resolution), so severities mean the
same at any resolution: blur and the like are given relative to the image side.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from catdog.batching import batches

log = logging.getLogger(__name__)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with sigma a fraction of the image side."""
    return cv2.GaussianBlur(image, (0, 0), sigma * image.shape[0]).reshape(image.shape)


def jpeg(image: np.ndarray, quality: float) -> np.ndarray:
    """Re-compressed as a JPEG of this quality (OpenCV's codec, which decoded the images in the first place)."""
    colour = image.shape[2] == 3
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if colour else image
    _, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    # decodes what imencode just wrote (imdecode says None only for bytes it cannot read)
    out = cast(np.ndarray, cv2.imdecode(data, cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE))
    return (cv2.cvtColor(out, cv2.COLOR_BGR2RGB) if colour else out).reshape(image.shape)


def brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """Every pixel times `factor` (darker below 1)."""
    return np.clip(image * factor, 0, 255).astype(np.uint8)


def contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Pulled towards the image's mean grey: factor 1 is the image, 0 a flat grey."""
    mean = image.mean()
    return np.clip(mean + (image.astype(np.float32) - mean) * factor, 0, 255).astype(np.uint8)


def rotation(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotated about the centre, the corners filled by reflection (no black wedges to spot)."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT_101).reshape(image.shape)


def zoom(image: np.ndarray, keep: float) -> np.ndarray:
    """The centre `keep` fraction of each side, enlarged back to the full size."""
    h, w = image.shape[:2]
    ch, cw = max(1, round(h * keep)), max(1, round(w * keep))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = image[top : top + ch, left : left + cw]
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR).reshape(image.shape)


def grayscale(image: np.ndarray, amount: float) -> np.ndarray:
    """Colour blended towards its luminance: 1 is fully grey (a 1-channel image is unchanged)."""
    if image.shape[2] == 1:
        return image
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None].astype(np.float32)
    return np.clip(gray * amount + image * (1 - amount), 0, 255).astype(np.uint8)


# kind -> (corruption, its parameter at severities 1, 2, 3)
CORRUPTIONS: dict[str, tuple[Callable[[np.ndarray, float], np.ndarray], tuple[float, ...]]] = {
    "blur": (blur, (0.01, 0.02, 0.04)),
    "jpeg": (jpeg, (50, 20, 8)),
    "brightness": (brightness, (0.7, 0.45, 0.25)),
    "contrast": (contrast, (0.6, 0.35, 0.15)),
    "rotation": (rotation, (10, 25, 45)),
    "zoom": (zoom, (0.85, 0.7, 0.5)),
    "grayscale": (grayscale, (0.5, 0.75, 1.0)),
}


def corrupt(images: np.ndarray, kind: str, severity: int) -> np.ndarray:
    """A batch (N, H, W, C) uint8 with corruption `kind` at `severity` (1-based) applied to each image."""
    fn, params = CORRUPTIONS[kind]
    return np.stack([fn(np.ascontiguousarray(image), params[severity - 1]) for image in images])


def robustness_accuracy(
    probabilities: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: np.ndarray, batch_size: int
) -> dict[str, float]:
    """`robustness/<kind>_<severity>`: accuracy on every corrupted copy of the images (and `robustness/clean`)."""
    correct: dict[str, int] = {}
    for b in batches(len(labels), batch_size):
        batch, truth = np.asarray(images[b]), labels[b]
        variants = {"clean": batch} | {
            f"{kind}_{s}": corrupt(batch, kind, s)
            for kind, (_, params) in CORRUPTIONS.items()
            for s in range(1, len(params) + 1)
        }
        for name, x in variants.items():
            hits = int((probabilities(x).argmax(1) == truth).sum())
            correct[f"robustness/{name}"] = correct.get(f"robustness/{name}", 0) + hits
    return {name: hits / max(len(labels), 1) for name, hits in correct.items()}


def robustness_table(accuracy: dict[str, float]) -> str:
    """One row per kind: accuracy at severity 0 (clean) to 3."""
    severities = max(len(params) for _, params in CORRUPTIONS.values())
    lines = [f"{'corruption':<12}" + "".join(f"{s:>8}" for s in range(severities + 1))]
    clean = accuracy["robustness/clean"]
    for kind, (_, params) in CORRUPTIONS.items():
        values = [clean] + [accuracy[f"robustness/{kind}_{s}"] for s in range(1, len(params) + 1)]
        lines.append(f"{kind:<12}" + "".join(f"{v:>8.3f}" for v in values))
    return "\n".join(lines)


def robustness_figure(accuracy: dict[str, float], title: str) -> Figure:
    """Accuracy against severity, one line per kind of corruption, all starting at the clean accuracy."""
    fig = Figure(figsize=(6.4, 4.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for kind, (_, params) in CORRUPTIONS.items():
        values = [accuracy["robustness/clean"]] + [
            accuracy[f"robustness/{kind}_{s}"] for s in range(1, len(params) + 1)
        ]
        ax.plot(range(len(values)), values, marker="o", label=kind)
    ax.set_xticks(range(len(params) + 1), ["clean", *map(str, range(1, len(params) + 1))])
    ax.set_xlabel("severity")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", ncols=2, fontsize=8)
    fig.tight_layout()
    return fig
