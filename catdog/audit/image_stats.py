"""The audit's outlier score: how unlike the folder's other photos a photo is in a few image statistics, with no
model, so it holds on a folder of any size the statistics can be compared on (from OUTLIER_MIN_PHOTOS photos).

Each photo is described by the statistics a camera photo keeps and random noise, a blank frame, a screenshot or a
scanned page do not: brightness, contrast, how alike neighbouring pixels are (horizontally and vertically), the
share of detail at the finest scale, colourfulness and the entropy of the grey levels.
Each statistic is put on a robust scale (median 0, interquartile range 1 over the folder); a photo's distance is
its mean Euclidean distance to its NEIGHBOURS nearest photos. The score is exp(-distance / median distance) in
(0, 1], low = unusual; a photo is an outlier when its distance is beyond Tukey's far-out fence of the folder's
distances, Q3 + FENCE x IQR.
"""

from __future__ import annotations

import numpy as np

NEIGHBOURS = 10  # cleanlab's default k for feature outliers
# Tukey's "far out" fence (1.5 IQR is his "outside"): on 298 photos of kaggle-train-fullres-600.zip at 48 px with 2
# planted noise images, the noise lies 49 IQR beyond Q3 and the most unusual photos 8, 4 and 3.5; 1.5 flagged 16
# photos with the noise, 3 flagged 3 (busy textures)
FENCE = 3.0
# below this many photos the quartiles of the statistics and of the distances rest on a handful of photos each
OUTLIER_MIN_PHOTOS = 50
STATISTICS = (
    "brightness",
    "contrast",
    "horizontal_correlation",
    "vertical_correlation",
    "fine_detail",
    "colourfulness",
    "entropy",
)
_BATCH = 512  # photos per step: 512 x 48 x 48 x 3 float32 = 14 MB at a time


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of a[i] and b[i] for each photo i (a constant photo: 1, as alike as pixels can be)."""
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    denominator = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.where(denominator > 0, (a * b).sum(1) / np.maximum(denominator, 1e-12), 1.0)


def image_statistics(images: np.ndarray) -> np.ndarray:
    """STATISTICS of each uint8 image (N, H, W, C; C = 1 or 3), shape (N, len(STATISTICS)), float64."""
    rows = []
    for start in range(0, len(images), _BATCH):
        x = np.asarray(images[start : start + _BATCH], dtype=np.float32)
        gray = x.mean(3)
        n = len(x)
        flat = gray.reshape(n, -1)
        # the finest detail: the mean absolute difference from the 2x2 mean, against the contrast
        h, w = gray.shape[1] // 2 * 2, gray.shape[2] // 2 * 2
        blocks = gray[:, :h, :w].reshape(n, h // 2, 2, w // 2, 2)
        fine = np.abs(blocks - blocks.mean((2, 4), keepdims=True)).mean((1, 2, 3, 4))
        if x.shape[3] == 3:  # Hasler and Suesstrunk's colourfulness: the spread of two opponent colours
            rg, yb = x[..., 0] - x[..., 1], 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
            colour = np.hypot(rg.reshape(n, -1).std(1), yb.reshape(n, -1).std(1))
        else:
            colour = np.zeros(n)
        counts = np.stack([np.bincount(r, minlength=32) for r in (flat.astype(np.int64) // 8)])
        p = counts / counts.sum(1, keepdims=True)
        entropy = -(p * np.log2(np.where(p > 0, p, 1))).sum(1)
        contrast = flat.std(1)
        rows.append(
            np.stack(
                [
                    flat.mean(1),
                    contrast,
                    _correlation(gray[:, :, :-1].reshape(n, -1), gray[:, :, 1:].reshape(n, -1)),
                    _correlation(gray[:, :-1].reshape(n, -1), gray[:, 1:].reshape(n, -1)),
                    fine / np.maximum(contrast, 1.0),
                    colour,
                    entropy,
                ],
                axis=1,
            )
        )
    return np.concatenate(rows).astype(np.float64) if rows else np.zeros((0, len(STATISTICS)))


def robust_scale(values: np.ndarray) -> np.ndarray:
    """Each column minus its median, over its interquartile range (a constant column: over 1)."""
    q1, median, q3 = np.percentile(values, [25, 50, 75], axis=0)
    spread = q3 - q1
    return (values - median) / np.where(spread > 0, spread, 1.0)


def outlier_scores(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each photo's outlier score in (0, 1] (low = unusual) and outlier flag, from image_statistics (see the module
    docstring); fewer than 2 photos: all 1 and none flagged."""
    n = len(images)
    if n < 2:
        return np.ones(n), np.zeros(n, dtype=bool)
    from sklearn.neighbors import NearestNeighbors

    features = robust_scale(image_statistics(images))
    k = min(NEIGHBOURS, n - 1)
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(features).kneighbors(features)
    distance = distances[:, 1:].mean(1)  # the first neighbour is the photo itself
    q1, median, q3 = np.percentile(distance, [25, 50, 75])
    score = np.exp(-distance / max(median, 1e-12))
    return score, distance > q3 + FENCE * (q3 - q1)
