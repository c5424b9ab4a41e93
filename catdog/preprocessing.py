"""What the network sees of a photo: the one decode-and-resize rule of training, evaluation, prediction and export.

OpenCV and numpy only (no torch, no Lightning), so a serving process can import it: `load_image(path,
**meta["preprocess"]["arguments"])` gives what catdog feeds the network, and `describe` writes the same rule
into the export JSON as words and as Python lines a client can follow without catdog.

The default is what a deployer writes anyway: `cv2.imread` at full size, then `cv2.resize(INTER_AREA)`.
`fast_decode` (opt-in, `data.fast_decode`) reads large JPEGs at 1/2, 1/4 or 1/8 size in libjpeg's DCT domain
first. On 600 Kaggle photos (~500x375) at 64x64 RGB that took about half the decode time (a one-off measurement),
and the pixels differed from the full-size decode by 2.6/255 on average, 9/255 on the worst photo: enough to flip
borderline photos, so a client must then follow the same rule.

`resize` (`data.resize`) says how a photo that is not square becomes one: `squash` (the default, both sides
resized to the resolution, the aspect ratio not kept), `crop` (the centre square, then resized) or `pad` (resized
so its longer side fits, then centred between black bars: a letterbox).
"""

from __future__ import annotations

import os
import struct

import cv2
import numpy as np

# the largest first: the smallest DCT-domain decode that still covers the target
REDUCTIONS = (8, 4, 2)
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def read_flag_name(channels: int, reduction: int = 1) -> str:
    """The cv2.IMREAD_* flag, by name, for a colour or grayscale image read at 1/reduction size."""
    colour = "COLOR" if channels == 3 else "GRAYSCALE"
    return f"IMREAD_REDUCED_{colour}_{reduction}" if reduction > 1 else f"IMREAD_{colour}"


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, without decoding; None if not a JPEG or no header is found."""
    if not is_jpeg(data):
        return None
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        # a fill byte, or a marker without a length field
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF_MARKERS:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


def reduction(size: tuple[int, int] | None, resolution: int) -> int:
    """fast_decode's factor for a JPEG of (width, height): the largest of 8, 4, 2 that keeps both sides of the
    reduced image (ceil(side / k), as libjpeg rounds) >= resolution, so the resize never enlarges; else 1."""
    if size is None:
        return 1
    width, height = size
    return next((k for k in REDUCTIONS if -(-width // k) >= resolution and -(-height // k) >= resolution), 1)


def read_flag(size: tuple[int, int] | None, resolution: int, channels: int, fast_decode: bool) -> int:
    """The cv2.imread/imdecode flag for a file whose `jpeg_size` is `size`: full size unless fast_decode."""
    k = reduction(size, resolution) if fast_decode else 1
    return getattr(cv2, read_flag_name(channels, k))


def centre_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square of an image (a view: no pixel is copied)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top : top + side, left : left + side]


def letterbox(image: np.ndarray, resolution: int) -> np.ndarray:
    """Resized so its longer side is `resolution` (aspect ratio kept, sides rounded to the nearest pixel), then
    centred on a black resolution x resolution square."""
    h, w = image.shape[:2]
    longer = max(h, w)
    width, height = (max(1, (side * resolution + longer // 2) // longer) for side in (w, h))
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    top, left = (resolution - height) // 2, (resolution - width) // 2
    bottom, right = resolution - height - top, resolution - width - left
    return cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=0)


def square(image: np.ndarray, resolution: int, resize: str = "squash") -> np.ndarray:
    """A decoded image (BGR or grayscale) as resolution x resolution pixels, made square as `resize` says."""
    if resize == "pad":
        return letterbox(image, resolution)
    if resize == "crop":
        image = centre_square(image)
    # INTER_AREA whatever the scale: what a deployer writes, and it averages away aliasing when shrinking
    return cv2.resize(image, (resolution, resolution), interpolation=cv2.INTER_AREA)


def fit(image: np.ndarray, resolution: int, channels: int, resize: str = "squash") -> np.ndarray:
    """A decoded BGR or grayscale image as the network input: (resolution, resolution, channels) uint8, RGB."""
    image = square(image, resolution, resize)
    return image[:, :, None] if channels == 1 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode(
    data: bytes, resolution: int, channels: int, fast_decode: bool = False, resize: str = "squash"
) -> np.ndarray | None:
    """The network input for an encoded image (any format OpenCV reads); None if OpenCV cannot decode it."""
    flag = read_flag(jpeg_size(data), resolution, channels, fast_decode)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)
    return None if image is None or image.size == 0 else fit(image, resolution, channels, resize)


def load_image(
    path: str | os.PathLike,
    resolution: int,
    channels: int,
    fast_decode: bool = False,
    resize: str = "squash",
) -> np.ndarray:
    """The network input for one image file, (resolution, resolution, channels) uint8 RGB, as catdog makes it.

    Stack a batch and transpose to NCHW: `np.stack(images).transpose(0, 3, 1, 2)`.
    """
    with open(path, "rb") as f:
        image = decode(f.read(), resolution, channels, fast_decode, resize)
    if image is None:
        raise ValueError(f"{path}: not an image OpenCV can decode")
    return image


def _read_lines(resolution: int, channels: int, fast_decode: bool) -> list[str]:
    if not fast_decode:
        return [
            f"image = cv2.imread(path, cv2.{read_flag_name(channels)})  # full size, EXIF orientation applied"
        ]
    flags = ", ".join(f"{k}: cv2.{read_flag_name(channels, k)}" for k in (*REDUCTIONS, 1))
    sides = f"-(-width // k) >= {resolution} and -(-height // k) >= {resolution}"
    return [
        "import catdog.preprocessing  # OpenCV + numpy only; jpeg_size reads a JPEG's frame header",
        "width, height = catdog.preprocessing.jpeg_size(open(path, 'rb').read()) or (0, 0)  # (0, 0): not a JPEG",
        f"k = next((k for k in {REDUCTIONS} if {sides}), 1)",
        f"image = cv2.imread(path, {{{flags}}}[k])  # 1/k size, in libjpeg's DCT domain",
    ]


def _square_lines(resolution: int, resize: str) -> list[str]:
    """`square` as Python lines a client runs: the same arithmetic, so the same pixels."""
    area = "interpolation=cv2.INTER_AREA"
    if resize == "pad":
        return [
            "h, w = image.shape[:2]; longer = max(h, w)",
            f"width, height = (max(1, (side * {resolution} + longer // 2) // longer) for side in (w, h))",
            f"image = cv2.resize(image, (width, height), {area})",
            f"top, left = ({resolution} - height) // 2, ({resolution} - width) // 2",
            f"image = cv2.copyMakeBorder(image, top, {resolution} - height - top, left, {resolution} - width - left, "
            "cv2.BORDER_CONSTANT, value=0)  # black bars",
        ]
    crop = [
        "h, w = image.shape[:2]; side = min(h, w); top, left = (h - side) // 2, (w - side) // 2",
        "image = image[top : top + side, left : left + side]  # the centre square",
    ]
    return [
        *(crop if resize == "crop" else []),
        f"image = cv2.resize(image, ({resolution}, {resolution}), {area})",
    ]


RESIZE_WORDS = {
    "squash": "cv2.resize to {r}x{r} with cv2.INTER_AREA (aspect ratio not kept)",
    "crop": "the centre square (side: the shorter side; offsets (h - side) // 2, (w - side) // 2), then cv2.resize "
    "to {r}x{r} with cv2.INTER_AREA",
    "pad": "cv2.resize with cv2.INTER_AREA so the longer side is {r} (the other side: round(side * {r} / longer), "
    "at least 1), then black bars to {r}x{r}, the image centred (top, left = ({r} - height) // 2, ({r} - width) "
    "// 2)",
}


def describe(resolution: int, channels: int, fast_decode: bool, resize: str = "squash") -> dict:
    """The rule in words and as Python lines (cv2, numpy, `path` in; `x` out), for the export JSON."""
    colour = "cv2.cvtColor(image, cv2.COLOR_BGR2RGB)" if channels == 3 else "image[:, :, None]"
    read = (
        f"a JPEG of width x height pixels (its frame header) is read with cv2.IMREAD_REDUCED_*_k, k the largest "
        f"of {', '.join(map(str, REDUCTIONS))} with ceil(width / k) >= {resolution} and ceil(height / k) >= "
        f"{resolution}; any other file, or when no k fits, with cv2.{read_flag_name(channels)}"
        if fast_decode
        else f"cv2.imread(path, cv2.{read_flag_name(channels)}) at full size"
    )
    arguments = {"resolution": resolution, "channels": channels, "fast_decode": fast_decode, "resize": resize}
    return {
        "function": f"{__name__}.load_image",
        "arguments": arguments,
        "rule": f"{read}; then ({resize}) {RESIZE_WORDS[resize].format(r=resolution)}; then "
        f"{'BGR to RGB' if channels == 3 else 'one channel'}; then NCHW uint8 0-255 (normalize is inside the "
        "model)",
        "python": [
            *_read_lines(resolution, channels, fast_decode),
            *_square_lines(resolution, resize),
            f"image = {colour}",
            "x = np.ascontiguousarray(image.transpose(2, 0, 1)[None])  # (1, C, H, W) uint8",
        ],
    }
