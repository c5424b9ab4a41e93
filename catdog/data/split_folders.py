"""Split folders: a source whose top level holds only `train/` and `val/` (or `valid/`, `validation/`) and/or
`test/`, each with class folders below, as ImageNet, Roboflow and Kaggle exports and torchvision's ImageFolder lay
data out. Its classes are the class folders and each photo keeps the split of its folder (`data.split_folders`).
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Sequence

from catdog.errors import CatdogError

log = logging.getLogger(__name__)
# a split folder's name, in any case, and the split it gives
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
GIVEN_SPLITS = ("train", "val", "test")


def top_prefix(paths: Sequence[str]) -> str:
    """The deepest folder holding every path, as a prefix (`data/` or empty): a zip may wrap its tree in one."""
    parents = {posixpath.dirname(p) for p in paths}
    top = posixpath.commonpath(list(parents)) if parents else ""
    return top + "/" if top else ""


def split_of(name: str, where: str) -> str:
    """The split a split column's (or folder's) value names; one error line naming `where` otherwise."""
    split = SPLIT_NAMES.get(name.strip().lower())
    if split is None:
        raise CatdogError(f"{where}: unknown split {name!r}; use train, val (or valid, validation) or test.")
    return split


def detect(paths: Sequence[str], mode: str | bool, source) -> tuple[str, dict[str, str]] | None:
    """(prefix, {split folder: split}) when the top level below `prefix` holds only split folders (train plus
    another), each with files in sub-folders; None when it does not (an error with `mode` true)."""
    if mode is False:
        return None
    prefix = top_prefix(paths)
    nested: dict[
        str, bool
    ] = {}  # top-level folder -> whether it holds a file in a sub-folder (a class folder)
    for p in paths:
        parts = p[len(prefix) :].split("/", 2)
        if len(parts) > 1:
            nested[parts[0]] = nested.get(parts[0], False) or len(parts) > 2
    folders = {name: SPLIT_NAMES.get(name.lower(), "") for name in nested}
    splits = set(folders.values())
    if all(splits) and "train" in splits and len(splits) >= 2 and all(nested.values()):
        return prefix, folders
    if mode is True:
        held = ", ".join(f"{name}/" for name in sorted(nested)) or "no folders"
        raise CatdogError(
            f"data.split_folders=true: the top level of data.source={source} holds {held}, not only split folders "
            "(train/ plus val/, valid/, validation/ or test/, each with class folders below). Lay it out so, or "
            "set data.split_folders=auto (or false: its folders are the classes)."
        )
    return None


def split_folder_labels(
    paths: Sequence[str], prefix: str, folders: dict[str, str]
) -> tuple[list[str | None], list[str]]:
    """Each path's class (the folder below its split folder; None for a file directly in a split folder) and
    given split."""
    names: list[str | None] = []
    given: list[str] = []
    seen: dict[str, str] = {}  # one string per class name, not one per photo
    for p in paths:
        parts = p[len(prefix) :].split("/")
        given.append(folders.get(parts[0], ""))
        names.append(seen.setdefault(parts[1], parts[1]) if len(parts) > 2 else None)
    return names, given


def warn_missing_classes(classes: Sequence[str], names, given, folders: dict[str, str], source) -> None:
    """A warning for each class with no photo in a split that the source gives."""
    shown = {split: folder for folder, split in sorted(folders.items(), reverse=True)}
    for split in GIVEN_SPLITS:
        if split not in shown:
            continue
        present = {n for n, g in zip(names, given) if g == split}
        for name in classes:
            if name not in present:
                log.warning(
                    "data.source=%s: class %s has no photo in the %s split (%s/): its %s metrics leave it out",
                    source,
                    name,
                    split,
                    shown[split],
                    split,
                )


def given_split_log(given: Sequence[str], val_fraction: float) -> str:
    """What the log says of the given splits: which came from the source, and where val came from."""
    counts = {s: sum(g == s for g in given) for s in GIVEN_SPLITS}
    text = (
        "splits as data.source gives them (" + ", ".join(f"{s} {n:,}" for s, n in counts.items() if n) + ")"
    )
    if not counts["val"]:
        text += f"; no val split given: val is drawn from train by the hashed rule (data.val_fraction={val_fraction})"
    return text
