"""A listed folder is held as arrays, not a `(path, size, mtime)` tuple per file (~200 bytes a photo at 400,000
photos, in prepare and in each forked decoding process): issue 51's peak RSS."""

from __future__ import annotations

import os
import tracemalloc

import numpy as np

from catdog.data.cache import cache_key
from catdog.data.listing import Listing, PathList, list_files
from catdog.data.sources import find_images

N = 20_000


def test_a_listed_folder_and_its_images_take_a_few_dozen_bytes_a_photo(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
    for i in range(N):
        (tmp_path / ("cat", "dog")[i % 2] / f"{i:07d}.jpg").touch()
    list_files(tmp_path, "dir")  # the imports and first calls, not counted
    tracemalloc.start()
    try:
        listing = list_files(tmp_path, "dir")
        listed, listing_peak = tracemalloc.get_traced_memory()
        del listing
        tracemalloc.reset_peak()
        found = find_images(tmp_path, "dir")
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found.paths[:2] == ["cat/0000000.jpg", "cat/0000002.jpg"] and found.labels[-1] == 1
    assert len(found.paths) == N and found.fingerprint[-1:][0][:2] == ("dog/0019999.jpg", 0)
    # bytes a photo: ~45 kept (a path's bytes and offset, size and mtime), a folder's names at the peak (~140); a
    # tuple per file kept ~155 (~185 at the peak)
    assert listed / N < 60 and listing_peak / N < 170, (listed / N, listing_peak / N)
    assert kept / N < 100 and peak / N < 200, (kept / N, peak / N)


def test_a_listing_encodes_the_cache_key_of_its_tuples():
    names = [f"a/{i}.jpg" for i in range(10_000)] + [os.fsdecode(b"b/\xff\xfe.jpg"), "c/é.png"]
    entries = [(p, i, 1.7e9 + i / 7) for i, p in enumerate(names)]
    listing = Listing.of(entries)
    assert listing[:] == entries and list(listing.paths) == names and listing.paths[-1] == "c/é.png"
    assert cache_key({"files": listing}) == cache_key({"files": entries})
    picked = listing.take(np.array([10_001, 3]))
    assert picked[:] == [entries[10_001], entries[3]] and len(PathList.of([])) == 0
