"""The near-duplicate index: the same pairs as comparing every pair, on generated hashes and on real photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from helpers import photo_like

from catdog.data.decode import decode_for_cache
from catdog.data.duplicates import duplicate_groups, exhaustive_pairs, hex_digest, near_pairs
from catdog.data.settings import DecodeSettings


def flip_bits(value: np.uint64, bits) -> np.uint64:
    for b in bits:
        value ^= np.uint64(1) << np.uint64(b)
    return value


def planted_hashes(n: int, distance: int, seed: int = 0) -> np.ndarray:
    """Random 64-bit hashes, plus copies of some at exactly 0..distance+1 bits (the flipped bits crowded into one
    block, spread one per block, or anywhere), and 60 identical hashes."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    planted = []
    for k in range(3 * (distance + 2)):
        flips, start = k % (distance + 2), int(rng.integers(0, distance + 1))
        if k % 3 == 0:  # every flipped bit in one block (blocks interleave: bits start, start + blocks, ...)
            bits = list(range(start, 64, distance + 1))[:flips]
        elif k % 3 == 1:  # side by side: one in each block
            bits = list(range(start, start + flips))
        else:
            bits = rng.choice(64, flips, replace=False).tolist()
        planted.append(flip_bits(hashes[int(rng.integers(n))], bits))
    same = np.full(60, hashes[int(rng.integers(n))], dtype=np.uint64)
    return rng.permutation(np.concatenate([hashes, np.array(planted, dtype=np.uint64), same]))


@pytest.mark.parametrize("distance", [0, 1, 4, 6])
def test_the_index_finds_exactly_the_pairs_of_the_exhaustive_search(distance):
    hashes = planted_hashes(3000, distance, seed=distance)
    pairs = near_pairs(hashes, distance)
    expected = exhaustive_pairs(hashes, distance)
    assert np.array_equal(pairs, expected[np.lexsort((expected[:, 1], expected[:, 0]))])
    found = np.bitwise_count(hashes[pairs[:, 0]] ^ hashes[pairs[:, 1]])
    assert distance in found.tolist()  # the edge is in, and the pair one bit further is not
    assert (found <= distance).all() and len(pairs) >= 60 * 59 // 2
    # the pairs one bit beyond are the exhaustive search's at distance + 1, none of them here
    wider = exhaustive_pairs(hashes, distance + 1)
    assert len(wider) > len(expected)


def test_every_pair_of_many_equal_hashes_and_none_across_chunks_is_lost(monkeypatch):
    from catdog.data import duplicates

    monkeypatch.setattr(duplicates, "_PAIRS", 1000)  # many steps, and one bucket larger than a step
    hashes = planted_hashes(2000, 4, seed=7)
    hashes[:300] = hashes[300]
    assert np.array_equal(near_pairs(hashes), exhaustive_pairs(hashes))
    assert len(near_pairs(hashes[:0])) == 0 and len(near_pairs(hashes[:1])) == 0


def reencodes(seed: int) -> list[np.ndarray]:
    """A photo-like image and its copies as catdog meets them: JPEG at quality 95, 50 and 30, half and double
    size, each decoded back."""
    original = photo_like(160, 120, seed)
    copies = [(original, 95), (original, 50), (original, 30)]
    copies += [
        (cv2.resize(original, (80, 60), interpolation=cv2.INTER_AREA), 90),
        (cv2.resize(original, (320, 240)), 90),
    ]
    return [cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1].tobytes() for img, q in copies]


def test_real_photos_with_planted_reencodes_and_resizes():
    settings = DecodeSettings(resolution=32, channels=3)
    files = [
        data for seed in range(40) for data in (reencodes(seed) if seed % 4 == 0 else reencodes(seed)[:1])
    ]
    hashes = np.array([decode_for_cache(data, settings)[2] for data in files], dtype=np.uint64)
    for distance in (4, 8):
        assert np.array_equal(near_pairs(hashes, distance), exhaustive_pairs(hashes, distance))
    # each planted family of 5 is one group; the other photos stand alone
    sha256 = [f"{i:064x}" for i in range(len(files))]
    _, groups = duplicate_groups(sha256, hashes)
    assert sorted(map(len, groups)) == [5] * 10


def test_photos_with_one_hash_are_one_group_keyed_by_their_smallest_content_hash():
    hashes = np.array([5, 5, 5, 7, 0xFFFF_FFFF_0000_0000, 5], dtype=np.uint64)  # 7: one bit from 5
    sha256 = ["d" * 64, "b" * 64, "c" * 64, "e" * 64, "a" * 64, "b" * 64]
    keys, groups = duplicate_groups(sha256, hashes)
    assert groups == [[0, 1, 2, 3, 5]] and [sha256[i] for i in keys] == ["b" * 64] * 4 + ["a" * 64, "b" * 64]
    keys, groups = duplicate_groups(
        np.array(sha256, dtype="S64"), hashes, max_distance=-1
    )  # exact copies only
    assert groups == [[1, 5]] and [sha256[i] for i in keys] == sha256


def test_digests_group_and_key_as_their_hex_does():
    rng = np.random.default_rng(3)
    # digests with zero bytes at their end, which an S32 array's items drop
    digests = [bytes(rng.integers(1, 256, 32 - i % 3, dtype=np.uint8)) + b"\0" * (i % 3) for i in range(300)]
    digests += digests[:20]
    hashes = rng.integers(0, 2**63, len(digests), dtype=np.uint64)
    hashes[300:] = hashes[:20] ^ np.uint64(1)  # near copies of the first 20
    keys, groups = duplicate_groups([d.hex() for d in digests], hashes)
    held = np.array(digests, dtype="S32")
    assert [hex_digest(h) for h in held] == [d.hex() for d in digests]
    same_keys, same_groups = duplicate_groups(held, hashes)
    assert np.array_equal(keys, same_keys) and same_groups == groups and len(groups) == 20
