"""A build's photo table: a row per decoded photo held as arrays (a few dozen bytes a photo, where Python strings
per photo took ~0.5 KB at 400,000 photos), and photos.csv's columns made from it a row at a time."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from catdog.data.building import Decoded
from catdog.data.duplicates import duplicate_groups, hex_digest
from catdog.data.filenames import printable
from catdog.data.sources import ImageSource


def photo_table(decoded: Decoded, labels: np.ndarray, max_distance: int) -> dict:
    """The decoded images' photo table as arrays: `index` into found.paths, `sha256` (S32 digests), `phash`, `group` (the
    index of the photo holding its group's key) and `members`, the duplicate groups as index lists."""
    ok = decoded.ok
    # where every file decoded, decoded's own arrays: no copy of 72 bytes a photo
    sha256, phash = (decoded.sha256, decoded.phash) if ok.all() else (decoded.sha256[ok], decoded.phash[ok])
    group, members = duplicate_groups(sha256, phash, max_distance)
    return {
        "index": np.flatnonzero(ok),
        "label": labels,
        "sha256": sha256,
        "phash": phash,
        "group": group,
        "members": members,
    }


def photo_rows(found: ImageSource, table: dict) -> dict[str, Iterable]:
    """photos.csv's columns from the photo table, each made a row at a time as it is written (a list of strings
    would take ~0.5 KB a photo)."""
    sha256, given = table["sha256"], found.given
    return {
        "path": (printable(found.paths[i]) for i in table["index"]),
        "label": (found.classes[c] for c in table["label"]),
        "sha256": (hex_digest(h) for h in sha256),
        "phash": (f"{p:016x}" for p in table["phash"]),
        "group": (hex_digest(sha256[g]) for g in table["group"]),
        "split": (given[i] if given else "" for i in table["index"]),
    }


def grouped_paths(found: ImageSource, table: dict) -> tuple[dict[int, str], list[list[int]]]:
    """The paths of the photos in duplicate groups, by photo index, and the groups (popped off `table`), each
    sorted by path as the report lists them."""
    paths = {i: printable(found.paths[table["index"][i]]) for g in table["members"] for i in g}
    return paths, [sorted(g, key=paths.__getitem__) for g in table.pop("members")]
