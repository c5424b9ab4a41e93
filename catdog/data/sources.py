"""Finding labelled images: class folders (below split folders or not), Kaggle's flat `cat.N.jpg` layout or a
labels.csv, in a directory or a zip/tar archive.

Archives are read in place (no extraction). Everything found is described by paths relative to the source, so
the same photos give the same listing whether they sit in a folder or a zip.
"""

from __future__ import annotations

import os
import posixpath
import re
import tarfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import IO, cast

import numpy as np

from catdog.data.filenames import (
    IMAGE_EXTENSIONS,
    archive_kind,
    check_usable,
    is_image_name,
    member_path,
    outside,
    printable,
    sort_files,
)
from catdog.data.label_file import is_label_file, list_label_file
from catdog.data.listing import Listing, PathList, list_files, walk
from catdog.data.settings import LAYOUTS
from catdog.data.split_folders import detect, split_folder_labels, top_prefix, warn_missing_classes
from catdog.errors import CatdogError
from catdog.rules import check_choice

_KAGGLE_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)\.[^/]+\.[A-Za-z]+$")


@dataclass
class ImageSource:
    """What was found at `data.source`: the labelled image files and the files passed over."""

    root: Path
    kind: str  # "dir" | "zip" | "tar"
    layout: str  # "folders" | "kaggle"
    classes: list[str]
    paths: Sequence[str]  # a PathList: one buffer, not a string per photo
    labels: np.ndarray  # int64
    ignored: list[dict] = field(default_factory=list)  # [{"path", "reason"}]
    # of every image, for the cache key: a Listing (a labels CSV's, [(path, size, mtime, label, split)])
    fingerprint: Listing | list = field(default_factory=list)
    given: list[str] = field(default_factory=list)  # each path's split as the source gives it ("" for none)
    split_folders: dict[str, str] = field(default_factory=dict)  # {split folder as found: split}


def _members(handle) -> dict:
    """Normalized name -> ZipInfo or TarInfo of every file in an open archive (the later of two same names)."""
    if isinstance(handle, zipfile.ZipFile):
        return {member_path(i.filename): i for i in handle.infolist() if not i.is_dir()}
    return {member_path(m.name): m for m in handle.getmembers() if m.isfile()}


def _detect_layout(paths: Sequence[str]) -> str:
    parents = {posixpath.dirname(p) for p in paths}
    if len(parents) == 1 and all(_KAGGLE_NAME.match(posixpath.basename(p)) for p in paths):
        return "kaggle"
    return "folders"


def _label_names(paths: Sequence[str], layout: str, where: Path) -> tuple[list[str | None], list[dict]]:
    """The class name of each path (None where it has none), and why the unlabelled ones were passed over."""
    seen: dict[str, str] = {}  # one string per class name, not one per photo
    if layout == "kaggle":
        matches = (_KAGGLE_NAME.match(posixpath.basename(p)) for p in paths)
        names = [seen.setdefault(k := m.group(1).lower(), k) if m else None for m in matches]
        reason = "file name does not start with '<class>.' (Kaggle layout)"
    else:
        parents = {posixpath.dirname(p) for p in paths}
        if len(parents) == 1:
            raise CatdogError(
                f"data.source={where}: all images sit in one folder, so there are no class sub-folders. "
                "Put each class in its own folder, or name files '<class>.<n>.jpg' and set data.layout=kaggle."
            )
        prefix = top_prefix(paths)
        names = []
        for p in paths:  # the first folder below the deepest common one; string ops, this runs per file
            parts = p[len(prefix) :].split("/")
            names.append(seen.setdefault(parts[0], parts[0]) if len(parts) > 1 else None)
        reason = "not inside a class folder"
    ignored = [{"path": printable(p), "reason": reason} for p, n in zip(paths, names) if n is None]
    return names, ignored


def resolve_root(source: str | os.PathLike, exclude: Path | None = None) -> tuple[Path, str] | None:
    """Where the images are: the path itself (a folder, an archive or a labels .csv), or the single archive in an
    otherwise image-less folder.

    Returns None for a missing or image-less folder (the caller may download); a missing file is an error.
    """
    root = Path(source).expanduser()
    if root.is_file():
        kind = "csv" if is_label_file(root) else archive_kind(root)
        if kind is None:
            raise CatdogError(
                f"data.source={root}: a file that is not a .zip or .tar archive nor a labels .csv. Point it at a "
                "folder, an archive or a CSV of path,label rows."
            )
        return root, kind
    if not root.is_dir():
        return None
    if any(is_image_name(rel) for rel, _ in walk(root, exclude)):
        return root, "dir"
    archives = sorted(e for e in root.iterdir() if e.is_file() and archive_kind(e))
    if len(archives) == 1:
        return archives[0], cast(str, archive_kind(archives[0]))  # the filter above kept archives only
    return None


def find_images(
    root: Path,
    kind: str,
    layout: str = "auto",
    exclude: Path | None = None,
    split_folders: str | bool = "auto",
) -> ImageSource:
    """List the labelled images below `root` (or in the labels CSV `root`); classes are numbered in sorted name
    order (cat=0, dog=1); with split folders (`split_folders`: auto, true or false), each keeps its split."""
    check_choice("data.layout", layout, LAYOUTS)
    if kind == "csv":
        return _from_label_file(root, split_folders)
    listing = list_files(root, kind, exclude)
    index, ignored, unsupported = sort_files(listing.paths)
    if not len(index):
        raise CatdogError(f"data.source={root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found.")
    images = listing.take(index)
    del listing
    paths = images.paths
    candidates = PathList.of(chain(paths, unsupported)) if unsupported else paths
    found = None if layout == "kaggle" else detect(candidates, split_folders, root)
    if found:
        prefix, folders = found
        names, given = split_folder_labels(candidates, prefix, folders)
        layout, reason = "folders", "not inside a class folder of its split folder"
        unlabelled = [{"path": printable(p), "reason": reason} for p, n in zip(paths, names) if n is None]
    else:
        layout = _detect_layout(paths) if layout == "auto" else layout
        names, unlabelled = _label_names(candidates, layout, root)
        given, folders = [""] * len(candidates), {}
        unlabelled = unlabelled[: sum(n is None for n in names[: len(paths)])]
    n = len(paths)
    check_usable(list(zip(given[n:], names[n:])), unsupported, set(zip(given[:n], names[:n])))
    del names[n:], given[n:]
    source = _labelled(root, kind, layout, paths, names, given, ignored + unlabelled, images)
    source.split_folders = folders
    if folders:
        warn_missing_classes(source.classes, names, given, folders, root)
    return source


def _labelled(root, kind, layout, paths, names, given, ignored, stamps) -> ImageSource:
    """The ImageSource of the paths that have a class name; at least two classes, else one error."""
    classes = sorted({n for n in names if n is not None})
    if len(classes) < 2:
        raise CatdogError(
            f"data.source={root}: found only {len(classes)} class ({', '.join(classes) or 'none'}); "
            "a classifier needs at least two class folders (or two name prefixes in the Kaggle layout, or two "
            "labels in a labels CSV)."
        )
    index = {c: i for i, c in enumerate(classes)}
    kept = np.flatnonzero(np.fromiter((n is not None for n in names), bool, len(names)))
    if isinstance(stamps, Listing):  # the paths are the listing's
        listed = stamps.take(kept)
        fingerprint: Listing | list = listed
        picked = listed.paths
    else:
        fingerprint, picked = [stamps[i] for i in kept], paths.take(kept)
    return ImageSource(
        root=root,
        kind=kind,
        layout=layout,
        classes=classes,
        paths=picked,
        labels=np.fromiter((index[cast(str, names[i])] for i in kept), np.int64, len(kept)),
        ignored=ignored,
        fingerprint=fingerprint,
        given=[given[i] for i in kept] if any(given) else [],
    )


def _from_label_file(csv_path: Path, split_folders: str | bool) -> ImageSource:
    """The photos a labels CSV lists (its split column kept unless data.split_folders=false)."""
    paths, names, given, ignored, stamps = list_label_file(csv_path, split_folders)
    source = _labelled(csv_path, "csv", "labels", PathList.of(paths), names, given, ignored, stamps)
    if any(given):  # its split column: the report's split_folders stay empty, there are no folders
        warn_missing_classes(source.classes, names, given, {s: s for s in given}, csv_path)
    return source


# what reading a damaged, encrypted or unsupported archive member raises
DAMAGED_MEMBER = (
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    EOFError,
    RuntimeError,
    NotImplementedError,
)


class SourceReader:
    """Reads files of a source by relative path; archive handles are opened lazily, once per process."""

    def __init__(self, root: Path, kind: str):
        # a labels CSV's paths are relative to its folder (os.path.join keeps an absolute one as it is)
        self.root, self.kind = (Path(root).parent, "dir") if kind == "csv" else (Path(root), kind)
        self._handle: zipfile.ZipFile | tarfile.TarFile | None = None
        self._members: dict = {}

    def read(self, path: str) -> bytes:
        if self.kind == "dir":  # plain strings and an unbuffered read: this runs once per image
            with open(os.path.join(self.root, path), "rb", buffering=0) as f:
                return f.readall()
        try:
            return self._read_archived(path)
        except DAMAGED_MEMBER as e:  # read errors (skipped files) for the callers
            raise OSError(f"{path}: damaged in {self.root.name} ({e})") from e

    def _read_archived(self, path: str) -> bytes:
        if self._handle is None:
            self._handle = zipfile.ZipFile(self.root) if self.kind == "zip" else tarfile.open(self.root)
            self._members = _members(self._handle)
        member = None if outside(path) else self._members.get(path)
        if member is None:
            raise OSError(f"{path} is not a regular file inside the archive")
        if self.kind == "zip":
            return cast(zipfile.ZipFile, self._handle).read(member)
        # _members holds regular files only, for which extractfile returns a file
        return cast(IO[bytes], cast(tarfile.TarFile, self._handle).extractfile(member)).read()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
