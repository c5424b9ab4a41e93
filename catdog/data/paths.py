"""Which photo each cached image is: its path relative to `data.source`, with `/` (e.g. `PetImages/Cat/1.jpg`)."""

from __future__ import annotations

from pathlib import Path

from catdog.data.cache import CachedArrays
from catdog.data.sources import archive_kind, find_images, printable
from catdog.errors import CatdogError


def image_paths(arrays: CachedArrays) -> list[str]:
    """The source path of every image in the arrays, in their order.

    The cache lists the files it skipped, not the ones it kept, so the source is listed again; the cache is keyed
    by the files' names, sizes and times, so an unchanged listing is the one the arrays were decoded from.
    """
    report = arrays.report
    root = Path(report["source"])
    found = find_images(root, archive_kind(root) or "dir", report["layout"], exclude=arrays.directory.parent)
    skipped = {s["path"] for s in report["skipped"]}
    paths = [printable(p) for p in found.paths if printable(p) not in skipped]
    if len(paths) != len(arrays.labels):
        raise CatdogError(
            f"data.source={root}: it lists {len(paths)} usable images, the cache {arrays.directory} holds "
            f"{len(arrays.labels)}; the files changed since. Run again to rebuild the cache."
        )
    return paths
