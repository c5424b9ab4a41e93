"""A cache while it is built: decoded images go to the disk chunk by chunk and a journal records each chunk done,
so memory stays flat whatever the number of photos, and a killed build resumes where it stopped.

The build lives in a temporary sibling of the cache directory (catdog.data.cache.temp_name). `decoding.npy` holds
one row per listed file (the rows of files that fail stay zero), written at their offsets by the decoding
processes; `journal.jsonl` holds a line per finished chunk (its ok flags, failures, sizes and hashes), appended only
once the rows it describes are on the disk. A later build of the same cache on this host adopts the folder of a
dead one (renamed to its own name: of two adopters one wins) and decodes only the files its journal lacks. When
every file is done, the rows of the decoded ones become images.npy and the folder is published in one rename.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap

from catdog.data.cache import JOURNAL, dead_builds, publish, remove_stale_temps, temp_name

log = logging.getLogger(__name__)
ROWS = "decoding.npy"
# a kill loses at most the chunks of the last second; a flush is two fsyncs (milliseconds)
JOURNAL_SECONDS = 1.0
# rows copied at a time when the failed files' rows are left out: a fixed part of prepare's peak memory
COPY_BYTES = 4 * 2**20


@dataclass
class Decoded:
    """What decoding found so far, per listed file."""

    done: np.ndarray  # bool: its chunk is finished
    ok: np.ndarray  # bool: decoded
    sizes: np.ndarray  # int32 (n, 2): original width and height, 0 where unknown
    sha256: np.ndarray  # S32: content hash, the digest's bytes (half its hex; see hex_digest)
    phash: np.ndarray  # uint64: perceptual hash
    failures: dict[int, str]  # file index -> why it was skipped

    @classmethod
    def empty(cls, n: int) -> Decoded:
        return cls(
            np.zeros(n, bool),
            np.zeros(n, bool),
            np.zeros((n, 2), np.int32),
            np.zeros(n, "S32"),
            np.zeros(n, np.uint64),
            {},
        )

    def add(self, chunk: dict) -> None:
        """A finished chunk: {start, ok ("1" or "0" per file), failures [[index, reason]], and per decoded file
        sizes [[w, h]], sha256 [hex], phash [int]}."""
        start, flags = chunk["start"], np.frombuffer(chunk["ok"].encode(), np.uint8) == ord("1")
        decoded = start + np.flatnonzero(flags)
        self.done[start : start + len(flags)], self.ok[start : start + len(flags)] = True, flags
        self.sizes[decoded] = np.asarray(chunk["sizes"], dtype=np.int32).reshape(-1, 2)
        self.sha256[decoded] = [bytes.fromhex(h) for h in chunk["sha256"]]
        self.phash[decoded] = np.asarray(chunk["phash"], dtype=np.uint64)
        self.failures.update((int(i), r) for i, r in chunk["failures"])


def write_rows(path: Path, offset: int, start: int, rows: np.ndarray) -> None:
    """Write rows `start`.. of the .npy file whose data begins at byte `offset` (no memory map: a mapped page
    written stays in this process's resident memory)."""
    data = memoryview(np.ascontiguousarray(rows).reshape(-1).view(np.uint8).data)
    position = offset + start * (rows[0].nbytes if len(rows) else 0)
    fd = os.open(path, os.O_WRONLY)
    try:
        while data:
            written = os.pwrite(fd, data, position)
            data, position = data[written:], position + written
    finally:
        os.close(fd)


class Build:
    """The temporary folder of one cache build (new, or adopted from a killed one); `with Build(...)` removes it
    on an error and keeps it, for the next build to resume, on Ctrl-C."""

    def __init__(self, directory: Path, shape: tuple[int, ...]):
        self.directory, self.shape = directory, shape
        self.decoded = Decoded.empty(shape[0])
        self._pending: list[str] = []
        self._flushed = -float("inf")  # the first chunk is journaled at once
        self._made_root = not directory.parent.exists()  # removed again if this build fails: nothing written
        directory.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self._adopt() or self._create()
        # after adopting: a killed build's arrays may be what fills the disk
        remove_stale_temps(directory.parent)
        self.rows = self.tmp / ROWS
        self.offset = int(np.load(self.rows, mmap_mode="r").offset)

    def __enter__(self) -> Build:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is KeyboardInterrupt:
            self.flush()
        elif kind is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if self._made_root:
                with contextlib.suppress(OSError):  # another build's meanwhile
                    self.directory.parent.rmdir()

    def _create(self) -> Path:
        tmp = temp_name(self.directory)
        tmp.mkdir()
        try:
            rows = open_memmap(tmp / ROWS, mode="w+", dtype=np.uint8, shape=self.shape)
            size = rows.offset + rows.nbytes
            del rows  # nothing written through the map: the file is sparse until decoded rows land
            with open(tmp / ROWS, "rb+") as f:
                try:  # a full disk now, before any decoding, rather than after
                    os.posix_fallocate(f.fileno(), 0, size)
                except OSError as e:
                    if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise
            (tmp / JOURNAL).touch()
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return tmp

    def _adopt(self) -> Path | None:
        """A killed build's folder renamed to this build's, its journal read; None when there is none to take."""
        for old in dead_builds(self.directory):
            tmp = temp_name(self.directory)
            try:
                os.rename(old, tmp)
            except OSError:  # another build took it first
                continue
            try:
                rows = np.load(tmp / ROWS, mmap_mode="r")
                if rows.shape != self.shape or rows.dtype != np.uint8:
                    raise ValueError(f"{ROWS} holds {rows.shape}, not {self.shape}")
                del rows
                self._read_journal(tmp / JOURNAL)
            except (OSError, ValueError) as e:
                log.warning("Cannot resume the build in %s (%s); decoding from the first photo.", old, e)
                self.decoded = Decoded.empty(self.shape[0])
                shutil.rmtree(tmp, ignore_errors=True)
                continue
            log.warning(
                "Resuming the build of %s left by a killed process: %d of %d files already decoded",
                self.directory,
                self.decoded.done.sum(),
                self.shape[0],
            )
            return tmp
        return None

    def _read_journal(self, path: Path) -> None:
        """Every whole line of the journal; a line cut short by the kill is cut off the file."""
        with open(path, "rb+") as f:
            kept = 0
            for line in f:
                try:
                    self.decoded.add(json.loads(line))
                except (ValueError, KeyError):
                    break
                kept += len(line)
            f.truncate(kept)

    def todo(self, chunk: int) -> list[tuple[int, int]]:
        """(start, count) of the files not decoded yet, in runs of at most `chunk`."""
        missing = np.flatnonzero(~self.decoded.done)
        runs = np.split(missing, np.flatnonzero(np.diff(missing) != 1) + 1) if len(missing) else []
        return [
            (s, min(chunk, int(r[-1]) + 1 - s)) for r in runs for s in range(int(r[0]), int(r[-1]) + 1, chunk)
        ]

    def record(self, chunk: dict) -> None:
        """A chunk whose rows are written: kept, and journaled with the others of the last second."""
        self.decoded.add(chunk)
        self._pending.append(json.dumps(chunk) + "\n")
        if time.monotonic() - self._flushed >= JOURNAL_SECONDS:
            self.flush()

    def flush(self) -> None:
        """The rows written so far onto the disk, then the journal lines that describe them."""
        if not self._pending:
            return
        with open(self.rows, "rb+") as rows:
            os.fsync(rows.fileno())
        with open(self.tmp / JOURNAL, "a", encoding="utf-8") as journal:
            journal.write("".join(self._pending))
            journal.flush()
            os.fsync(journal.fileno())
        self._pending.clear()
        self._flushed = time.monotonic()

    def finish(self, labels: np.ndarray, report: dict, photos: dict[str, Iterable]) -> None:
        """Publish the cache: the decoded files' rows as images.npy, with the labels, report and photos.csv's
        columns (catdog.data.cache.publish)."""
        images, ok = self.tmp / "images.npy", self.decoded.ok
        if ok.all():
            os.replace(self.rows, images)
        else:
            self._copy_decoded(images)
            os.unlink(self.rows)
        os.unlink(self.tmp / JOURNAL)
        publish(self.tmp, self.directory, labels, report, photos)

    def _copy_decoded(self, path: Path) -> None:
        """The rows of the decoded files into a new .npy, COPY_BYTES at a time."""
        ok, row = self.decoded.ok, int(np.prod(self.shape[1:]))
        out = open_memmap(path, mode="w+", dtype=np.uint8, shape=(int(ok.sum()), *self.shape[1:]))
        offset = out.offset
        del out
        step, done = max(1, COPY_BYTES // max(row, 1)), 0
        with open(self.rows, "rb") as src:
            for start in range(0, len(ok), step):
                count = min(step, len(ok) - start)
                block = np.frombuffer(
                    os.pread(src.fileno(), count * row, self.offset + start * row), np.uint8
                )
                kept = block.reshape(count, *self.shape[1:])[ok[start : start + count]]
                write_rows(path, offset, done, kept)
                done += len(kept)
