"""Writing files that a kill or a full disk cannot spoil, and the one message for a full disk.

Every file catdog publishes (cache arrays, splits, checkpoints, metrics, predictions, sweep summaries) goes through
`replace_atomic`: written beside its final name, flushed to the disk, then renamed over it, so a reader sees the
old file or the whole new one and never a half-written one.
"""

from __future__ import annotations

import csv
import ctypes
import errno
import fcntl
import itertools
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from catdog.errors import CatdogError


def usable_cpus() -> int:
    """The cores this process may run on (a SLURM job or a container gets fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (a rename) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, write: Callable[[IO], object], binary: bool = True) -> None:
    """Write a file and flush it to the disk (the rename that publishes it must not outrun its data)."""
    # text mode with newline="": no translation of the line ends write_csv writes; UTF-8 whatever the locale
    with open(path, "wb") if binary else open(path, "w", newline="", encoding="utf-8") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def is_disk_full(exc: BaseException | None) -> bool:
    """ENOSPC or EDQUOT, or numpy's short write ("N requested and M written"), anywhere in the exception's chain
    (torch.save reports a full disk as a RuntimeError raised while handling the OSError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and (
            exc.errno in (errno.ENOSPC, errno.EDQUOT)
            or ("requested and" in str(exc) and "written" in str(exc))
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def written_file(exc: BaseException | None) -> str | None:
    """The file a failed write was writing, where the OSError in the chain names it."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.filename:
            return str(exc.filename)
        exc = exc.__cause__ or exc.__context__
    return None


def disk_full_error(path: str | Path, fix: str) -> CatdogError:
    """The one message for a full disk: which file, that the disk is full, and what to do."""
    return CatdogError(f"No space left on the device while writing {path}. {fix}")


def replace_atomic(path: Path, write: Callable[[IO], object], binary: bool) -> None:
    """Write beside `path` and rename over it, so readers see the old file or the whole new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write_synced(tmp, write, binary)
        os.replace(tmp, path)
    except OSError as e:
        # a failed write() names no file: name the one being replaced
        e.filename = e.filename or str(path)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def path_within(folder: Path, relative: str) -> Path:
    """`folder/<relative>` (a posix path: a listed file's or archive member's), its folders kept and never outside
    `folder` ('/', '.' and '..' dropped); a backslash is part of a file name, as on Linux, not a folder."""
    parts = [p for p in PurePosixPath(relative).parts if p not in ("/", "..", ".")]
    return folder.joinpath(*parts) if parts else folder / "image"


def write_csv(f: IO, header, rows: Iterable) -> None:
    """A header row, then the rows, to an open text file: every CSV catdog writes goes through here.

    Lines end in a plain `\n` (csv's default `\r\n` leaves a `\r` on each line: `grep ',val$' splits.csv` finds
    nothing); csv then quotes a field only for `\n`, so a row with a `\r` in a field (a file name can hold one) has
    every field quoted, which reads back the same.
    """
    plain = csv.writer(f, lineterminator="\n")
    quoted = csv.writer(f, lineterminator="\n", quoting=csv.QUOTE_ALL)
    for row in itertools.chain([header], rows):
        (quoted if any("\r" in str(v) for v in row) else plain).writerow(row)


def write_json_atomic(path: Path, obj) -> None:
    replace_atomic(path, lambda f: json.dump(obj, f, indent=2), binary=False)


def save_npy_atomic(path: Path, array) -> None:
    import numpy as np

    replace_atomic(path, lambda f: np.save(f, array), binary=True)


def save_figure(path: Path, figure, dpi: float | None = None) -> None:
    """A matplotlib figure as a PNG, written atomically."""
    replace_atomic(Path(path), lambda f: figure.savefig(f, format="png", dpi=dpi), binary=True)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold `path`.lock exclusively (other processes, and other opens in this one, wait): one writer at a time of
    what is computed to go into `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def release_freed_memory() -> None:
    """Hand the heap's freed pages back to the system (glibc's malloc_trim; nothing elsewhere): memory Python freed
    otherwise stays resident, in this process and in every process it forks next."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
