"""A listing of files held as arrays: the paths as one UTF-8 buffer with end offsets (~8 bytes a path beyond its
name) and size and mtime (or an archive's CRC) as numpy arrays, where a `(path, size, mtime)` tuple per file took
~200 bytes at 400,000 photos (issue 51's peak RSS), in prepare and in every forked decoding process."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import overload

import numpy as np

BATCH = 4096  # paths encoded or decoded at a time: a batch's strings are all that is held as Python objects


def _encode(path: str) -> bytes:
    """A path's bytes: a folder's undecodable names (os.listdir's surrogate escapes) come back as they were."""
    return path.encode("utf-8", "surrogateescape")


class PathList(Sequence[str]):
    """Strings in one buffer: `ends[i]` is where the i-th ends; an item is decoded as it is read."""

    def __init__(self, data: bytes = b"", ends: np.ndarray | None = None):
        self.data, self.ends = data, np.zeros(0, np.int64) if ends is None else ends

    @classmethod
    def of(cls, paths: Iterable[str]) -> PathList:
        """The strings of `paths`, encoded BATCH at a time."""
        parts: list[bytes] = []
        lengths: list[np.ndarray] = []
        items = iter(paths)
        while batch := [_encode(p) for p in islice(items, BATCH)]:
            parts.append(b"".join(batch))
            lengths.append(np.fromiter(map(len, batch), np.int64, len(batch)))
        return cls(b"".join(parts), np.cumsum(np.concatenate([np.zeros(0, np.int64), *lengths])))

    def __len__(self) -> int:
        return len(self.ends)

    def _item(self, i: int) -> str:
        start = int(self.ends[i - 1]) if i else 0
        return self.data[start : int(self.ends[i])].decode("utf-8", "surrogateescape")

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._item(j) for j in range(*i.indices(len(self)))]
        j = int(i)
        if not -len(self) <= j < len(self):
            raise IndexError(i)
        return self._item(j % len(self))

    def __iter__(self) -> Iterator[str]:
        for start in range(0, len(self), BATCH):
            yield from self[start : start + BATCH]

    def take(self, index: np.ndarray) -> PathList:
        """The paths at `index`, in its order."""
        if len(index) == len(self) and np.array_equal(index, np.arange(len(self))):
            return self
        return PathList.of(self._item(int(i)) for i in index)


@dataclass
class Listing:
    """Files as arrays: `paths`, `size` (int64, -1 where os.stat failed) and `stamp` (float64: mtime, or a zip
    member's CRC). A slice is the `(path, size, stamp)` tuples the cache key encodes."""

    paths: PathList
    size: np.ndarray
    stamp: np.ndarray

    @classmethod
    def of(cls, entries: Iterable[tuple[str, int, float]]) -> Listing:
        """The listing of `(path, size, stamp)` entries, read BATCH at a time."""
        sizes: list[np.ndarray] = []
        stamps: list[np.ndarray] = []

        def names() -> Iterator[str]:
            items = iter(entries)
            while batch := list(islice(items, BATCH)):
                sizes.append(np.array([e[1] for e in batch], np.int64))
                stamps.append(np.array([e[2] for e in batch], np.float64))
                yield from (e[0] for e in batch)

        paths = PathList.of(names())
        empty = [np.zeros(0)]
        return cls(paths, np.concatenate(empty + sizes).astype(np.int64), np.concatenate(empty + stamps))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, part: slice) -> list[tuple[str, int, float]]:
        return list(zip(self.paths[part], self.size[part].tolist(), self.stamp[part].tolist()))

    def take(self, index: np.ndarray) -> Listing:
        """The files at `index`, in its order."""
        return Listing(self.paths.take(index), self.size[index], self.stamp[index])
