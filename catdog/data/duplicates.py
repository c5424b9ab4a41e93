"""Photo identity and duplicates: a content hash per file, a perceptual hash per decoded image, and their groups.

Exact duplicates share the sha256 of their bytes. Near duplicates (the same photo re-encoded at another JPEG
quality, resized, or re-saved in another format) have perceptual hashes at most NEAR_DISTANCE bits apart. Groups
are the connected components of both relations, so a chain of near copies is one group; a group keeps its photos
in one split, and a group whose photos carry different labels is a label conflict.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

# pHash: the 8x8 lowest frequencies of the DCT of a 32x32 grayscale resize, each bit = coefficient > median.
PHASH_SIZE, PHASH_LOW = 32, 8
# Each hash has 32 bits set (median threshold), so distances are even. On PetImages (25k photos) every pair within
# 4 bits is the same photo (re-saved, or the same placeholder image), while the closest unrelated pairs are 6-8 bits
# apart; JPEG re-encodes (quality 95 -> 50) and 0.5x-2x resizes of one photo stay within 0-4 bits.
NEAR_DISTANCE = 4
# rows of the pairwise Hamming search per step: 256 x 25k uint64 = 51 MB at a time (25k photos: about 1 s)
_CHUNK = 256


def content_hash(data: bytes) -> str:
    """A photo's identity: the sha256 of its bytes (hex); independent of its name, folder or archive."""
    return hashlib.sha256(data).hexdigest()


def photo_ids(sha256: list[str]) -> np.ndarray:
    """Content hashes in 8 bytes each (int64): what a checkpoint stores of its training photos (a chance match of
    two different photos among 10^5 is about 10^-9)."""
    return np.array([int(h[:16], 16) for h in sha256], dtype=np.uint64).view(np.int64)


def phash_values(phash: list[str]) -> np.ndarray:
    """photos.csv's perceptual hashes (16 hex digits each) as uint64."""
    return np.array([int(h, 16) for h in phash], dtype=np.uint64)


def perceptual_hash(img: np.ndarray, rgb: bool = False) -> int:
    """The 64-bit DCT pHash of an image (gray H x W or H x W x 1, BGR H x W x 3, or RGB if `rgb`), as an unsigned
    integer."""
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY if rgb else cv2.COLOR_BGR2GRAY)
    small = cv2.resize(img, (PHASH_SIZE, PHASH_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:PHASH_LOW, :PHASH_LOW].ravel()
    # the median of the 64 values as np.median computes it, which would import numpy.ma (~15 ms in each worker)
    middle = np.partition(low, (31, 32))[31:33]
    bits = low > (middle[0] + middle[1]) / np.float32(2)
    return int(np.packbits(bits).view(">u8")[0])


def photo_hash(photo: np.ndarray, network_input: np.ndarray) -> int:
    """The pHash of a decoded photo (BGR or gray), taken from its network input (RGB or gray, an INTER_AREA resize
    of the photo) when that is at least 32x32, else from the photo."""
    # a second resize of a full-size 500x375 photo would cost ~25% of its decode. At 50x50 grayscale and at 64x64
    # RGB, on PetImages both choices find the same 39 pairs within 4 bits and the same 40 within 6; one photo's two
    # hashes differ by 0.1-0.3 bits on average
    if min(network_input.shape[:2]) >= PHASH_SIZE:
        return perceptual_hash(network_input, rgb=True)
    return perceptual_hash(photo)


def near_pairs(hashes: np.ndarray, max_distance: int = NEAR_DISTANCE) -> np.ndarray:
    """(i, j) pairs with i < j whose uint64 hashes differ in at most `max_distance` bits, shape (P, 2)."""
    n = len(hashes)
    found = []
    for start in range(0, n, _CHUNK):
        rows = hashes[start : start + _CHUNK]
        distance = np.bitwise_count(rows[:, None] ^ hashes[None, start:])
        i, j = np.nonzero(distance <= max_distance)
        keep = j > i  # the block's columns start at `start`: j > i is the upper triangle
        found.append(np.stack([i[keep] + start, j[keep] + start], axis=1))
    return np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)


def _components(n: int, pairs) -> np.ndarray:
    """Connected components of n nodes joined by `pairs`: the smallest member index of each node's component."""
    parent = np.arange(n)

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in pairs:
        ra, rb = root(int(a)), root(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(a) for a in range(n)], dtype=np.int64)


def duplicate_groups(
    sha256: list[str], phash: np.ndarray, max_distance: int = NEAR_DISTANCE
) -> tuple[list[str], list[list[int]]]:
    """Each photo's group key (the smallest sha256 in its group: independent of listing order) and the groups of
    two or more photos, as lists of photo indices."""
    unique, first, inverse = np.unique(np.asarray(sha256), return_index=True, return_inverse=True)
    # near pairs among distinct contents only: exact copies are already one node
    component = _components(len(unique), near_pairs(phash[first], max_distance))
    keys = unique[component]
    members: dict[int, list[int]] = {}
    for i, c in enumerate(component[inverse]):
        members.setdefault(int(c), []).append(i)
    return keys[inverse].tolist(), [m for m in members.values() if len(m) > 1]


def copies_of(hashes: np.ndarray, reference: np.ndarray, max_distance: int = NEAR_DISTANCE) -> np.ndarray:
    """Whether each photo of `hashes` (uint64 pHashes) is in one near-duplicate group with a photo of `reference`:
    the groups duplicate_groups forms (so the split keeps together), chains of near copies included."""
    joined = np.concatenate([reference, hashes])
    component = _components(len(joined), near_pairs(joined, max_distance))
    return np.isin(component[len(reference) :], component[: len(reference)])


def describe_groups(
    groups: list[list[int]], paths: list[str], labels: np.ndarray, sha256: list[str], classes: list[str]
) -> tuple[list[dict], list[dict]]:
    """report.json's `duplicates` (every group, `exact` when all share the bytes, else `near`) and
    `label_conflicts` (the groups whose photos carry different labels), paths sorted within each group."""
    duplicates, conflicts = [], []
    for group in groups:
        group = sorted(group, key=lambda i: paths[i])
        entry = {"paths": [paths[i] for i in group], "labels": [classes[labels[i]] for i in group]}
        kind = "exact" if len({sha256[i] for i in group}) == 1 else "near"
        duplicates.append({"kind": kind, **entry})
        if len(set(entry["labels"])) > 1:
            conflicts.append(entry)
    return duplicates, conflicts


def summarize_duplicates(report: dict) -> str:
    """One line of counts for `catdog.prepare` and the log."""
    groups = report.get("duplicates", [])
    exact = [g for g in groups if g["kind"] == "exact"]
    conflicts = report.get("label_conflicts", [])
    return (
        f"duplicates: {len(exact):,} groups of identical files ({sum(len(g['paths']) for g in exact):,} photos), "
        f"{len(groups) - len(exact):,} groups of near duplicates (pHash within {NEAR_DISTANCE} bits), each kept in "
        f"one split; label conflicts: {len(conflicts):,} groups ({sum(len(g['paths']) for g in conflicts):,} "
        "photos; excluded unless data.label_conflicts=keep)"
    )
