"""The preprocessed-array cache: keyed by the source's files and every preprocessing parameter, written atomically.

A cache is a directory `<cache_dir>/<name>-<key>/` holding `images.npy` (uint8, N x H x W x C), `labels.npy`
(int64), `report.json` and `photos.csv` (per image: its path in the source, label, content hash, perceptual hash,
duplicate group and given split), `duplicates_across_splits.csv` where copies cross the given splits, plus the
`splits-*.csv` of the runs that used it. It is built in a temporary sibling and renamed into place, so a kill at any
moment leaves either no cache or a complete one (and a build the next one resumes: catdog.data.building), and two
processes building the same cache both end with a valid one.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from catdog.errors import CatdogError
from catdog.io import disk_full_error, fsync_dir, is_disk_full, write_csv, write_synced

log = logging.getLogger(__name__)
# 3: the perceptual hash (and so the near-duplicate groups that splits keep together) is taken from the
# network-size image from 32 px on: older caches are rebuilt rather than mixed with the new rule; 4: photos.csv's
# `split` column (the split a source's split folders or labels CSV give, else empty)
CACHE_FORMAT_VERSION = 4
PHOTO_COLUMNS = ("path", "label", "sha256", "phash", "group", "split")
KEY_BATCH = 4096  # files a step of cache_key encodes
JOURNAL = "journal.jsonl"  # in a build's temporary folder: the chunks done (catdog.data.building)


@dataclass
class CachedArrays:
    images: np.ndarray  # uint8 (N, H, W, C), memory-mapped
    labels: np.ndarray  # int64 (N,)
    report: dict
    directory: Path

    @property
    def classes(self) -> list[str]:
        return self.report["classes"]

    @cached_property
    def photos(self) -> dict[str, list[str]]:
        """photos.csv's PHOTO_COLUMNS, one entry per image: read on first use (~0.5 KB a photo as Python strings,
        which `python -m catdog.prepare` never needs)."""
        return read_photos(self.directory / "photos.csv", len(self.labels))


def cache_key(description: dict) -> str:
    """A stable hash of everything that determines the arrays (files, parameters, format version): the sha256 of
    their JSON, the list under "files" encoded KEY_BATCH entries at a time (all of 400,000 at once: ~60 MB)."""
    files = description["files"]
    marker = f"files-{uuid.uuid4().hex}"
    described = {"format": CACHE_FORMAT_VERSION, **description, "files": marker}
    head, tail = json.dumps(described, sort_keys=True, default=str).split(f'"{marker}"')
    digest = hashlib.sha256(f"{head}[".encode("utf-8", "surrogateescape"))
    for start in range(0, len(files), KEY_BATCH):  # json.dumps(list) is "[" + ", ".join(each item) + "]"
        part = json.dumps(files[start : start + KEY_BATCH], sort_keys=True, default=str)[1:-1]
        digest.update(f"{', ' if start else ''}{part}".encode("utf-8", "surrogateescape"))
    digest.update(f"]{tail}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


def temp_name(directory: Path) -> Path:
    """`.<name>.<host>-<pid>.<random>.tmp`: who is building it, so a later build can tell a dead one's leftovers."""
    return directory.with_name(
        f".{directory.name}.{socket.gethostname()}-{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    )


_TEMP_OWNER = re.compile(r"^\.[^.]+\.(?P<host>.+)-(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(cache_root: Path, max_age_s: float = 24 * 3600) -> None:
    """Delete half-written caches of killed builds: this host's whose process is gone, any host's after a day."""
    host = socket.gethostname()
    for tmp in cache_root.glob(".*.tmp"):
        owner = _TEMP_OWNER.match(tmp.name)
        try:
            dead = (owner is not None and owner["host"] == host and not _pid_alive(int(owner["pid"]))) or (
                time.time() - tmp.stat().st_mtime > max_age_s
            )
        except OSError:  # removed meanwhile by another cleaner
            continue
        if dead and tmp.is_dir():
            log.info("Removing %s, left by a killed cache build", tmp)
            shutil.rmtree(tmp, ignore_errors=True)


def dead_builds(directory: Path) -> list[Path]:
    """The temporary folders of `directory` left with a journal by killed or interrupted builds on this host (ones
    a new build may resume), in name order."""
    host, found = socket.gethostname(), []
    for tmp in sorted(directory.parent.glob(f".{directory.name}.*.tmp")):
        owner = _TEMP_OWNER.match(tmp.name)
        pid = int(owner["pid"]) if owner else -1
        # this process's own: a build it left on Ctrl-C (in a notebook, say), which nothing else is running
        dead = owner is not None and owner["host"] == host and (pid == os.getpid() or not _pid_alive(pid))
        if dead and (tmp / JOURNAL).exists():
            found.append(tmp)
    return found


@contextmanager
def cache_errors(directory: Path) -> Iterator[None]:
    """A failed write to the cache as one CatdogError: the full disk, or the folder that cannot be written."""
    try:
        yield
    except OSError as e:
        if is_disk_full(e):
            raise disk_full_error(
                f"the cache {directory} (data.cache_dir)",
                "Free some space or point data.cache_dir at a larger disk; nothing was changed.",
            ) from e
        raise CatdogError(
            f"data.cache_dir={directory.parent}: cannot write the cache there ({e.strerror or e}). "
            "Point data.cache_dir at a writable folder."
        ) from e


def publish(
    tmp: Path, directory: Path, labels: np.ndarray, report: dict, photos: dict[str, Iterable]
) -> None:
    """Complete the build in `tmp` (its images.npy already written) and publish it as `directory` in one rename;
    a concurrent identical build that wins is kept. `photos`: an iterable per PHOTO_COLUMNS, read once in step."""
    try:
        with open(tmp / "images.npy", "rb+") as f:
            os.fsync(f.fileno())
        # plain writes inside the temporary dir: the dir's rename below is what publishes them
        write_synced(tmp / "labels.npy", lambda f: np.save(f, labels))
        write_synced(tmp / "report.json", lambda f: json.dump(report, f, indent=2), binary=False)
        rows = zip(*(photos[c] for c in PHOTO_COLUMNS))
        write_synced(tmp / "photos.csv", lambda f: write_csv(f, PHOTO_COLUMNS, rows), binary=False)
        fsync_dir(tmp)
        try:
            os.rename(tmp, directory)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            log.info("Another process finished the same cache first; using %s", directory)
        fsync_dir(directory.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_cache(directory: Path) -> CachedArrays | None:
    """The cache in `directory`, memory-mapped; None if absent. A damaged cache is removed (with a warning)."""
    if not directory.is_dir():
        return None
    try:
        report = json.loads((directory / "report.json").read_text())
        images = np.load(directory / "images.npy", mmap_mode="r")
        labels = np.load(directory / "labels.npy", mmap_mode="r")
        n = report["n_images"]
        if images.dtype != np.uint8 or images.ndim != 4 or len(images) != n or labels.shape != (n,):
            raise ValueError(f"arrays of shape {images.shape}/{labels.shape} do not match n_images={n}")
        count_photos(directory / "photos.csv", n)
    except (OSError, ValueError, KeyError, csv.Error, json.JSONDecodeError) as e:
        log.warning("Cache %s is damaged (%s); rebuilding it.", directory, e)
        shutil.rmtree(directory, ignore_errors=True)
        return None
    return CachedArrays(
        images=images,
        # labels are small: a writable copy
        labels=np.array(labels, dtype=np.int64),
        report=report,
        directory=directory,
    )


def count_photos(path: Path, n: int) -> None:
    """ValueError when photos.csv does not list n images under PHOTO_COLUMNS (its rows read one at a time)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = tuple(next(rows, ()))
        count = sum(1 for _ in rows)
    if header != PHOTO_COLUMNS or count != n:
        raise ValueError(f"photos.csv does not list the {n} images")


def read_photos(path: Path, n: int) -> dict[str, list[str]]:
    """photos.csv as columns; ValueError when it does not describe the n images."""
    columns: list[list[str]] = [[] for _ in PHOTO_COLUMNS]
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = tuple(next(rows, ()))
        for row in rows:  # column by column: a list per row held for them all is ~100 bytes a photo more
            for column, value in zip(columns, row, strict=True):
                column.append(value)
    if header != PHOTO_COLUMNS or len(columns[0]) != n:
        raise ValueError(f"photos.csv does not list the {n} images")
    return dict(zip(PHOTO_COLUMNS, columns))
