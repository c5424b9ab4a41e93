"""Photo identity and duplicates: a content hash per file, a perceptual hash per decoded image, and their groups.

Exact duplicates share the sha256 of their bytes. Near duplicates (the same photo re-encoded at another JPEG
quality, resized, or re-saved in another format) have perceptual hashes at most NEAR_DISTANCE bits apart. Groups
are the connected components of both relations, so a chain of near copies is one group; a group keeps its photos
in one split, and a group whose photos carry different labels is a label conflict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

# pHash: the 8x8 lowest frequencies of the DCT of a 32x32 grayscale resize, each bit = coefficient > median.
PHASH_SIZE, PHASH_LOW = 32, 8
# Each hash has 32 bits set (median threshold), so distances are even. On PetImages (25k photos) every pair within
# 4 bits is the same photo (re-saved, or the same placeholder image), while the closest unrelated pairs are 6-8 bits
# apart; JPEG re-encodes (quality 95 -> 50) and 0.5x-2x resizes of one photo stay within 0-4 bits.
NEAR_DISTANCE = 4
# candidate pairs near_pairs compares per step: 64k pairs hold ~6 MB of index and hash arrays at a time (at 400,000
# photos, 256k took 16 MB more and were no faster)
_PAIRS = 1 << 16
# rows of the exhaustive search per step: 256 x 25k uint64 = 51 MB at a time
_ROWS = 256


def content_hash(data: bytes) -> str:
    """A photo's identity: the sha256 of its bytes (hex); independent of its name, folder or archive."""
    return hashlib.sha256(data).hexdigest()


def hex_digest(digest: bytes) -> str:
    """The hex of a sha256 digest held in an S32 array, whose items drop their trailing zero bytes."""
    return digest.ljust(32, b"\0").hex()


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


def _block_masks(max_distance: int) -> list[np.uint64]:
    """The max_distance + 1 blocks that split the 64 bits, as masks: block k holds bits k, k + blocks, ...
    Interleaved, each block mixes low and high frequencies: on 3,000 of the scale benchmark's synthetic photos,
    contiguous blocks of 13 bits made 2.3x the candidate pairs of random hashes, interleaved ones 1.05x."""
    blocks = max_distance + 1
    return [np.uint64(sum(1 << bit for bit in range(k, 64, blocks))) for k in range(blocks)]


def _bucket_pairs(hashes: np.ndarray, mask: np.uint64):
    """Every (i, j), i < j, of the indices whose `hashes` agree on the bits of `mask`, as pairs of arrays of at most
    about _PAIRS each (vectorised: no loop per key or per bucket). Besides the sort order, two arrays of 8 bytes a
    photo at a time."""
    keys = hashes & mask
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    new = np.ones(len(keys), bool)
    np.not_equal(keys[1:], keys[:-1], out=new[1:])
    del keys
    starts = np.flatnonzero(new)
    sizes = np.diff(np.r_[starts, len(new)])
    # each position pairs with the later members of its bucket: its bucket's last position less its own
    later = np.repeat(starts + sizes - 1, sizes)
    later -= np.arange(len(later))
    ends = np.cumsum(later)
    cuts = np.r_[0, np.searchsorted(ends, np.arange(_PAIRS, ends[-1] if len(ends) else 0, _PAIRS)), len(new)]
    del ends
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        counts = later[lo:hi]
        left = np.repeat(np.arange(lo, hi), counts)
        step = np.arange(len(left)) - np.repeat(np.cumsum(counts) - counts, counts)
        i, j = order[left], order[left + 1 + step]
        yield np.minimum(i, j), np.maximum(i, j)


def near_pairs(hashes: np.ndarray, max_distance: int = NEAR_DISTANCE) -> np.ndarray:
    """(i, j) pairs with i < j whose uint64 hashes differ in at most `max_distance` bits, shape (P, 2), sorted.

    Multi-index hashing: split into max_distance + 1 blocks of bits, two hashes that far apart agree exactly on at
    least one block (pigeonhole), so only hashes sharing a block value are compared; a pair is kept from the first
    block it shares only. Random 64-bit hashes in 5 blocks of 12-13 bits: 400,000 photos compare about 6 * 10^7
    candidate pairs where the exhaustive search compares 8 * 10^10.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    if max_distance < 0:
        return np.zeros((0, 2), dtype=np.int64)
    masks = _block_masks(max_distance)
    found = [np.zeros((0, 2), dtype=np.int64)]
    for b, mask in enumerate(masks):
        for i, j in _bucket_pairs(hashes, mask):
            diff = hashes[i] ^ hashes[j]
            keep = np.bitwise_count(diff) <= max_distance
            for earlier in masks[:b]:  # a pair that shares an earlier block was found there
                keep &= (diff & earlier) != 0
            found.append(np.stack([i[keep], j[keep]], axis=1).astype(np.int64))
    pairs = np.concatenate(found)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def exhaustive_pairs(hashes: np.ndarray, max_distance: int = NEAR_DISTANCE) -> np.ndarray:
    """near_pairs by comparing every pair (time grows with the square of the photos): the reference near_pairs
    is tested and benchmarked against."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    found = [np.zeros((0, 2), dtype=np.int64)]
    for start in range(0, len(hashes), _ROWS):
        distance = np.bitwise_count(hashes[start : start + _ROWS, None] ^ hashes[None, start:])
        i, j = np.nonzero(distance <= max_distance)
        keep = j > i  # the block's columns start at `start`: j > i is the upper triangle
        found.append(np.stack([i[keep] + start, j[keep] + start], axis=1).astype(np.int64))
    return np.concatenate(found)


def components(n: int, pairs: np.ndarray) -> np.ndarray:
    """The connected component of each of n nodes joined by `pairs` (k x 2 node indices), as a label per node."""
    # scipy's import (~0.1 s) only where groups are made
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _index_type(n: int) -> type:
    """The integer type of indices into n items: 4 bytes where they fit."""
    return np.int32 if n < 2**31 else np.int64


def _distinct(sha256: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(sha256, return_index=True, return_inverse=True)[1:] for hashes (S32 digests or S64 hex), sorting
    them as big-endian words a column at a time: ~50 bytes a photo at once, where np.unique's copies take ~220."""
    words = sha256.view(">u8").reshape(len(sha256), sha256.itemsize // 8)
    order = np.lexsort(words.T[::-1])  # stable: the first of equal hashes first
    new = np.zeros(len(order), bool)
    new[:1] = True
    for column in words.T:
        ordered = column[order]
        new[1:] |= ordered[1:] != ordered[:-1]
    return order[new], _inverse(order, new)


def _unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(values, return_inverse=True), with ~24 bytes a value at once where np.unique's copies take ~40."""
    order = np.argsort(values)
    values = values[order]
    new = np.ones(len(values), bool)
    np.not_equal(values[1:], values[:-1], out=new[1:])
    return values[new], _inverse(order, new)


def _inverse(order: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Each item's distinct value: `order` sorts the items, `new` marks where a value starts in that order."""
    inverse: np.ndarray = np.empty(len(order), _index_type(len(order)))
    inverse[order] = np.cumsum(new, dtype=inverse.dtype) - 1
    return inverse


def duplicate_groups(
    sha256: Sequence[str] | np.ndarray, phash: np.ndarray, max_distance: int = NEAR_DISTANCE
) -> tuple[np.ndarray, list[list[int]]]:
    """Each photo's group key, as the index of a photo holding it (the smallest sha256 in its group: independent of
    listing order), and the groups of two or more photos, as lists of photo indices (each sorted, the groups by
    their first photo). `sha256`: hex strings, or an array of them (S64) or of the digests (S32: the same order)."""
    hashes = sha256 if isinstance(sha256, np.ndarray) else np.asarray(sha256, dtype="S64")
    first, inverse = _distinct(hashes)
    # exact copies are one node, and so are distinct contents with equal hashes: n photos of one placeholder
    # image would otherwise be n^2 / 2 pairs
    values, node = _unique(np.asarray(phash, dtype=np.uint64)[first])
    if max_distance < 0:  # exact copies only
        values, node = values[node], np.arange(len(node))
    content_group = components(len(values), near_pairs(values, max_distance))[node]
    # each array dropped once used: a few of 8 bytes a photo at a time
    del values, node
    # contents are sorted by hash: a group's first content holds its smallest one
    smallest = np.unique(content_group, return_index=True)[1]
    photo_group = content_group[inverse]
    del content_group, inverse
    keys = first[smallest[photo_group]]
    del first, smallest
    order = np.argsort(photo_group, kind="stable")
    photo_group = photo_group[order]
    starts = np.flatnonzero(np.r_[True, photo_group[1:] != photo_group[:-1]])
    del photo_group
    sizes = np.diff(np.r_[starts, len(order)])
    groups = [order[s : s + z].tolist() for s, z in zip(starts[sizes > 1], sizes[sizes > 1])]
    return keys, sorted(groups, key=lambda g: g[0])


def copies_of(hashes: np.ndarray, reference: np.ndarray, max_distance: int = NEAR_DISTANCE) -> np.ndarray:
    """Whether each photo of `hashes` (uint64 pHashes) is in one near-duplicate group with a photo of `reference`:
    the groups duplicate_groups forms (so the split keeps together), chains of near copies included."""
    joined = np.concatenate([reference, hashes])
    component = components(len(joined), near_pairs(joined, max_distance))
    return np.isin(component[len(reference) :], component[: len(reference)])


def describe_groups(
    groups: list[list[int]],
    paths: Mapping[int, str] | Sequence[str],
    labels: np.ndarray,
    sha256: Sequence[str] | np.ndarray,
    classes: list[str],
) -> tuple[list[dict], list[dict]]:
    """report.json's `duplicates` (every group, `exact` when all share the bytes, else `near`) and
    `label_conflicts` (the groups whose photos carry different labels), paths sorted within each group. `paths`
    needs only the grouped photos' paths, by photo index."""
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
