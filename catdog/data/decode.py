"""Decoding one image file to a fixed-size uint8 array, or saying precisely why it cannot be used.

Pure functions on bytes, so they are easy to test on fabricated files and cheap to run in worker processes.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from catdog.data.duplicates import perceptual_hash

DEFAULT_MAX_PIXELS = 100_000_000  # refuse decompression bombs before OpenCV allocates them
_REDUCTIONS = (
    (8, cv2.IMREAD_REDUCED_GRAYSCALE_8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_GRAYSCALE_4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_GRAYSCALE_2, cv2.IMREAD_REDUCED_COLOR_2),
)
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class BadImage(Exception):
    """A file that cannot be used as a training image; the message is the reason shown in the report."""


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, without decoding; None if no frame header is found."""
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
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


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from the header of a JPEG, PNG, GIF or BMP; None for other formats."""
    if is_jpeg(data):
        return jpeg_size(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:4] in (b"GIF8",) and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    return None


def is_truncated_jpeg(data: bytes) -> bool:
    """A JPEG whose end-of-image marker is missing: OpenCV would return it with its lower part grey."""
    return is_jpeg(data) and b"\xff\xd9" not in data[-4096:].rstrip(b"\x00\r\n ")[-2048:]


def _reduced_flag(size: tuple[int, int] | None, resolution: int, channels: int) -> int:
    """The largest JPEG DCT-domain reduction that keeps both sides >= the target (never upscale afterwards)."""
    plain = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
    if size is None:
        return plain
    width, height = size
    for factor, gray, color in _REDUCTIONS:
        if -(-width // factor) >= resolution and -(-height // factor) >= resolution:
            return gray if channels == 1 else color
    return plain


def decode_image(
    data: bytes,
    resolution: int,
    channels: int = 1,
    skip_truncated: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode and resize to (resolution, resolution, channels) uint8, RGB order; raise BadImage with the reason."""
    return decode_for_cache(data, resolution, channels, skip_truncated, max_pixels)[0]


def decode_for_cache(
    data: bytes,
    resolution: int,
    channels: int = 1,
    skip_truncated: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, tuple[int, int], int]:
    """decode_image, plus the original (width, height) for the report's size statistics (header parsed once) and
    the perceptual hash that finds near duplicates (from the decoded image before its final resize)."""
    if not data:
        raise BadImage("empty file")
    size = header_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise BadImage(f"too large ({size[0]}x{size[1]} pixels > data.max_pixels={max_pixels})")
    if is_truncated_jpeg(data):
        if skip_truncated:
            raise BadImage("truncated JPEG (no end-of-image marker)")
        data += (
            b"\xff\xd9"  # OpenCV rejects a JPEG without its end marker; with one, the missing part is grey
        )
    if is_jpeg(data):
        flag = _reduced_flag(size, resolution, channels)
    else:
        flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)
    except cv2.error as e:
        raise BadImage(f"cannot be decoded ({str(e).strip().splitlines()[-1]})") from e
    if img is None or img.size == 0:
        raise BadImage("not a decodable image")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise BadImage(f"too large ({img.shape[1]}x{img.shape[0]} pixels > data.max_pixels={max_pixels})")
    if size is None:
        size = (img.shape[1], img.shape[0])
    phash = perceptual_hash(img)
    # INTER_AREA averages away aliasing when shrinking by 2x or more; below that bilinear is as good and 4x faster
    shrink = max(img.shape[0], img.shape[1]) / resolution
    img = cv2.resize(
        img, (resolution, resolution), interpolation=cv2.INTER_AREA if shrink >= 2 else cv2.INTER_LINEAR
    )
    if channels == 1:
        return img[:, :, None], size, phash
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), size, phash
