"""The photo table a build holds: arrays, not Python objects per photo (prepare's peak memory at 400,000 photos)."""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path

import numpy as np

from catdog.data.building import Decoded
from catdog.data.cache import PHOTO_COLUMNS
from catdog.data.duplicates import NEAR_DISTANCE
from catdog.data.photos import grouped_paths, photo_rows, photo_table
from catdog.data.sources import ImageSource

N = 20_000


def listing() -> tuple[ImageSource, Decoded]:
    """N listed photos of two classes, every seventh failed to decode, with three exact copies."""
    found = ImageSource(
        root=Path("photos"),
        kind="dir",
        layout="folders",
        classes=["cat", "dog"],
        paths=[f"{('cat', 'dog')[i % 2]}/{i:07d}.jpg" for i in range(N)],
        labels=[i % 2 for i in range(N)],
    )
    decoded = Decoded.empty(N)
    decoded.ok[:] = np.arange(N) % 7 != 3
    decoded.sha256[:] = [hashlib.sha256(str(i).encode()).digest() for i in range(N)]
    decoded.sha256[[12, 20, 30]] = decoded.sha256[12]
    decoded.phash[:] = np.random.default_rng(0).integers(0, 2**63, N, dtype=np.uint64)
    return found, decoded


def test_the_photo_table_is_arrays_of_a_few_dozen_bytes_a_photo():
    found, decoded = listing()
    labels = np.asarray(found.labels)[decoded.ok]
    photo_table(decoded, labels, NEAR_DISTANCE)  # scipy's import, not counted
    tracemalloc.start()
    try:
        table = photo_table(decoded, labels, NEAR_DISTANCE)
        paths, members = grouped_paths(found, table)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert {k: type(v) for k, v in table.items()} == dict.fromkeys(table, np.ndarray)
    assert members == [[10, 17, 26]] and paths == {
        10: "cat/0000012.jpg",
        17: "cat/0000020.jpg",
        26: "cat/0000030.jpg",
    }
    # bytes a photo: ~76 kept and ~260 at the peak here; lists of strings per photo kept ~0.5 KB
    assert kept / N < 120 and peak / N < 400, (kept / N, peak / N)


def test_photos_csv_columns_are_made_a_row_at_a_time():
    found, decoded = listing()
    table = photo_table(decoded, np.asarray(found.labels)[decoded.ok], NEAR_DISTANCE)
    columns = photo_rows(found, table)
    tracemalloc.start()
    try:
        rows = zip(*(columns[c] for c in PHOTO_COLUMNS))
        first = next(rows)
        count = 1 + sum(1 for _ in rows)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    sha = hashlib.sha256(b"0").hexdigest()
    assert first == ("cat/0000000.jpg", "cat", sha, f"{int(decoded.phash[0]):016x}", sha, "")
    assert count == int(decoded.ok.sum()) and peak < 100_000  # bytes: a few rows, never a column
