"""Decoding one image file to a fixed-size uint8 array, or saying precisely why it cannot be used.

The pixels follow catdog.preprocessing (the rule exports state); this module adds the guards a photo dump needs:
empty, truncated, undecodable and oversized files become a BadImage with the reason.

Pure functions on bytes, so they are easy to test on fabricated files and cheap to run in worker processes.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from catdog.data.duplicates import photo_hash
from catdog.data.settings import DEFAULT_MAX_PIXELS, DecodeSettings
from catdog.preprocessing import fit, is_jpeg, jpeg_size, read_flag


class BadImage(Exception):
    """A file that cannot be used as a training image; the message is the reason shown in the report."""


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


def decode_image(
    data: bytes,
    resolution: int,
    channels: int = 1,
    skip_truncated: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    fast_decode: bool = False,
    resize: str = "squash",
) -> np.ndarray:
    """catdog.preprocessing's (resolution, resolution, channels) uint8 RGB input; BadImage with the reason."""
    settings = DecodeSettings(
        resolution=resolution,
        channels=channels,
        skip_truncated=skip_truncated,
        max_pixels=max_pixels,
        fast_decode=fast_decode,
        resize=resize,
    )
    return decode_for_cache(data, settings)[0]


def decode_for_cache(data: bytes, settings: DecodeSettings) -> tuple[np.ndarray, tuple[int, int], int]:
    """decode_image, plus the original (width, height) for the report's size statistics (header parsed once) and
    the perceptual hash that finds near duplicates (see catdog.data.duplicates.photo_hash)."""
    resolution, channels, max_pixels = settings.resolution, settings.channels, settings.max_pixels
    if not data:
        raise BadImage("empty file")
    size = header_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise BadImage(f"too large ({size[0]}x{size[1]} pixels > data.max_pixels={max_pixels})")
    if is_truncated_jpeg(data):
        if settings.skip_truncated:
            raise BadImage("truncated JPEG (no end-of-image marker)")
        # OpenCV rejects a JPEG without its end marker; with one, the missing part is grey
        data += b"\xff\xd9"
    flag = read_flag(size if is_jpeg(data) else None, resolution, channels, settings.fast_decode)
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
    fitted = fit(img, resolution, channels, settings.resize)
    # hashed from the squashed photo whatever data.resize is: the same duplicate groups, hence the same split,
    # in every mode (a crop or a letterbox would hash only part of the photo, or bars)
    squashed = fitted if settings.resize == "squash" else fit(img, resolution, channels)
    return fitted, size, photo_hash(img, squashed)
