"""Which files are photos to read, by name: the one rule of training (catdog.data.sources) and predict, and the
reason a file is passed over; how archive members' names are read and printed."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from catdog.errors import CatdogError

# what OpenCV decodes to 8-bit images (JPEG also as Windows' .jfif and .jpe, JPEG 2000, the portable any-maps,
# Sun raster), the one rule of training and predict; float formats (.hdr, .pfm, .exr) are no photos
IMAGE_EXTENSIONS = (
    *(".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".gif", ".webp", ".avif", ".tif", ".tiff"),
    *(".jp2", ".pbm", ".pgm", ".ppm", ".pnm", ".sr", ".ras"),
)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
# photo formats OpenCV does not read: named with the fix rather than passed over as any other file
UNSUPPORTED = "unsupported image format"  # the reason's start
UNSUPPORTED_PHOTOS = (
    ".heic",
    ".heif",
    ".dng",
    ".cr2",
    ".cr3",
    ".nef",
    ".arw",
    ".raf",
    ".orf",
    ".rw2",
    ".psd",
)


def printable(path: str) -> str:
    """A file name as it can be printed and written to JSON (non-UTF-8 bytes become U+FFFD)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def member_path(name: str) -> str:
    """An archive member's name as a path relative to the archive: `./Cat/1.jpg` -> `Cat/1.jpg`.

    `tar -C photos .` and shutil.make_archive store every member below `./`. A name that is absolute or climbs out
    with `..` stays so (`/etc/x.jpg`, `../x.jpg`); `outside` tells it apart, so it is never read nor taken for a class.
    """
    return posixpath.normpath(name)


def outside(path: str) -> bool:
    """Whether an archive member's path is absolute or leaves the archive's folder through `..`."""
    return path.startswith("/") or path == ".." or path.startswith("../")


def archive_kind(path: Path) -> str | None:
    """ "zip" or "tar" for an archive's name, else None."""
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    return None


def is_image_name(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def passed_over(path: str) -> str | None:
    """Why a file is no photo to read, by its name (the rule of training and predict); None for an image."""
    name = posixpath.basename(path)
    if outside(path):
        return "outside the archive (absolute or '..' path)"
    if path.startswith("__MACOSX/") or "/__MACOSX/" in path or name.startswith("._") or name == ".DS_Store":
        return "macOS metadata file"
    if is_image_name(path):
        return None
    if path.lower().endswith(UNSUPPORTED_PHOTOS):
        return f"{UNSUPPORTED} ({posixpath.splitext(path)[1]}: convert it to JPEG)"
    return "not an image file (by extension)"


def sort_files(paths: Iterable[str]) -> tuple[np.ndarray, list[dict], list[str]]:
    """(indices of the images among `paths`, ignored [{"path", "reason"}], paths of photos in formats OpenCV does
    not read)."""
    ignored, unsupported, flags = [], [], []
    for path in paths:
        reason = passed_over(path)
        flags.append(reason is None)
        if reason is None:
            continue
        ignored.append({"path": printable(path), "reason": reason})
        if reason.startswith(UNSUPPORTED):
            unsupported.append(path)
    return np.flatnonzero(np.array(flags, bool)), ignored, unsupported


def check_usable(keys: list[tuple[str, str | None]], unsupported: list[str], usable: set) -> None:
    """One error for a class folder that holds photos of unsupported formats only (12 .HEIC files): without it
    the class would vanish, or its sibling would seem to be the only class folder. `keys`: (split, class) of each
    unsupported photo; `usable`: those of the images."""
    for key, path in zip(keys, unsupported):
        if key[1] is None or key in usable:
            continue
        same = [p for k, p in zip(keys, unsupported) if k == key]
        kinds = "/".join(sorted({posixpath.splitext(p)[1] for p in same}))
        raise CatdogError(
            f"data.source: {printable(posixpath.dirname(path) or '.')}/ has no usable images ({len(same)} {kinds} files: "
            "not supported; convert them to JPEG)."
        )
