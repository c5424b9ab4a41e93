"""Which photos train, validate and test: a seeded function of each photo's identity, not of its position.

A photo's split follows from a number u in [0, 1) hashed from the seed and its duplicate group's key (the smallest
content hash in the group): test when u < test_fraction, val when the next val_fraction (or, with k folds, when
the rest falls in fold i), else train. So the same photos land in the same split from a folder, a zip or a tar
in any member order, adding or removing a photo moves no other (unless it is a duplicate of it), and copies of
a photo share its split. Every class gets its share of u in expectation; a class that would get no val (or test)
photo at all gets its train photo with the smallest u, so tiny data still validates every class.

A source that gives its splits (split folders, a labels CSV's split column) keeps them: each photo stays in its
given split, copies across splits included (the user chose them); without a given val split, val is drawn from
the given train photos by the rule above.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import cast

import numpy as np

from catdog.data.settings import SplitSettings
from catdog.errors import CatdogError
from catdog.io import replace_atomic, write_csv

SPLITS = ("train", "val", "test", "excluded")
TRAIN, VAL, TEST, EXCLUDED = range(4)
CROSSING_FILE = "duplicates_across_splits.csv"
_DEFAULTS = {f.name: f.default for f in fields(SplitSettings)}


def seeded_uniform(keys: Sequence[str], seed: int, purpose: str) -> np.ndarray:
    """A number in [0, 1) per key, a function of (purpose, seed, key) alone."""
    digests = (hashlib.blake2b(f"{purpose}:{seed}:{k}".encode(), digest_size=8).digest() for k in keys)
    return np.array([int.from_bytes(d, "big") for d in digests], dtype=np.float64) / 2.0**64


def _ensure_each_class(code, u, group_classes, num_classes: int, target: int) -> None:
    """Give a class with no photo in `target` its train group with the smallest u, if it keeps another one."""
    for c in range(num_classes):
        mine = group_classes[c]
        if (code[mine] == target).any():
            continue
        train = mine[code[mine] == TRAIN]
        if len(train) >= 2:
            code[train[np.argmin(u[train])]] = target


def _conflicted(group_classes: list[np.ndarray], n_groups: int) -> np.ndarray:
    """Per duplicate group: whether its photos carry more than one label (`group_classes`: each class's groups)."""
    n_labels = np.zeros(n_groups, dtype=np.int64)
    for members in group_classes:
        n_labels[members] += 1
    return n_labels > 1


def uses_given(settings: SplitSettings, given: Sequence[str] | None) -> bool:
    """Whether the photos keep the splits their source gives (it gives some, and data.given_splits=true)."""
    return bool(settings.given_splits and given is not None and any(given))


def check_given_splits(settings: SplitSettings, given: Sequence[str] | None, source) -> None:
    """One error for split settings that contradict the splits a source gives: data.test_fraction, data.folds,
    and data.val_fraction where a val split is given (without one, val is drawn from train by it)."""
    if not uses_given(settings, given):
        return
    names = sorted(set(given or ()) - {""}, key=SPLITS.index)
    keys = ["test_fraction", "folds"] + (["val_fraction"] if "val" in names else [])
    wrong = [k for k in keys if getattr(settings, k) != _DEFAULTS[k]]
    if wrong:
        # experiment=fast and best set data.test_fraction=0.1: the fix names the value to give back
        values = " ".join(f"data.{k}={'null' if _DEFAULTS[k] is None else _DEFAULTS[k]}" for k in wrong)
        raise CatdogError(
            f"{', '.join(f'data.{k}={getattr(settings, k)}' for k in wrong)}: data.source={source} gives its own "
            f"splits ({', '.join(names)}). Add {values} (a preset such as experiment=fast sets "
            "data.test_fraction), or data.given_splits=false to split its photos by the hashed rule."
        )


def _given_codes(given: Sequence[str], groups, labels: np.ndarray, settings: SplitSettings) -> np.ndarray:
    """The given splits as codes; without a given val split, val drawn from the given train photos by the rule."""
    code = np.array([SPLITS.index(g) for g in given], dtype=np.int8)
    if not (code == VAL).any():
        train = np.flatnonzero(code == TRAIN)
        drawn = assign_splits([groups[i] for i in train.tolist()], labels[train], settings)
        code[train] = drawn
    if settings.label_conflicts == "drop":
        keys, inverse = np.unique(np.asarray(groups), return_inverse=True)
        group_classes = [np.unique(inverse[labels == c]) for c in np.unique(labels)]
        code[_conflicted(group_classes, len(keys))[inverse]] = EXCLUDED
    return code


def assign_splits(
    groups: Sequence[str],
    labels: np.ndarray,
    settings: SplitSettings,
    exclude: np.ndarray | None = None,
    given: Sequence[str] | None = None,
) -> np.ndarray:
    """The split of each photo, as an index into SPLITS; `groups` are the photos' duplicate-group keys, `settings`
    those of a data config or of a checkpoint's record of its training data, `given` the splits the source gives
    (photos.csv's `split` column), kept unless settings.given_splits is false.

    With `folds`=K the non-test photos fall into K equal folds by u and fold `fold` is val (val_fraction unused);
    the test split is the same for every fold. Groups whose photos carry different labels are `excluded` when
    label_conflicts=drop; so are the photos `exclude` marks (data.exclude), which moves no other photo: the rest
    are split as if those were not there.
    """
    if exclude is not None and exclude.any():
        code = np.full(len(groups), EXCLUDED, dtype=np.int8)
        keep = np.flatnonzero(~exclude)
        kept_given = [given[i] for i in keep.tolist()] if given is not None else None
        code[keep] = assign_splits(
            [groups[i] for i in keep.tolist()], labels[keep], settings, None, kept_given
        )
        return code
    if uses_given(settings, given):
        return _given_codes(cast(Sequence[str], given), groups, labels, settings)
    seed, test_fraction, folds = settings.seed, settings.test_fraction, settings.folds
    keys, inverse = np.unique(np.asarray(groups), return_inverse=True)
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    u = seeded_uniform(keys.tolist(), seed, "split")
    code = np.full(len(keys), TRAIN, dtype=np.int8)
    code[u < test_fraction] = TEST
    group_classes = [np.unique(inverse[labels == c]) for c in range(num_classes)]
    if settings.label_conflicts == "drop":
        code[_conflicted(group_classes, len(keys))] = EXCLUDED
    if test_fraction > 0:
        # before val is drawn: the test split must not depend on the fold
        _ensure_each_class(code, u, group_classes, num_classes, TEST)
    if folds:
        position = (u - test_fraction) / (1 - test_fraction) * folds
        code[(code == TRAIN) & (np.minimum(np.floor(position), folds - 1) == settings.fold)] = VAL
    else:
        code[(code == TRAIN) & (u < test_fraction + settings.val_fraction)] = VAL
        _ensure_each_class(code, u, group_classes, num_classes, VAL)
    return code[inverse]


def interleave(labels: np.ndarray) -> np.ndarray:
    """The permutation that spreads the classes evenly while keeping each class's own order: every prefix of
    the result holds each class in proportion to its count (to within one photo)."""
    position = np.zeros(len(labels), dtype=np.float64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        position[members] = (np.arange(len(members)) + 0.5) / len(members)
    return np.lexsort((labels, position))


def split_order(indices: np.ndarray, labels: np.ndarray, sha256: Sequence[str], seed: int) -> np.ndarray:
    """A split's photos in their fixed order: seeded by content within each class, the classes interleaved, so
    any number of first batches is a fair sample and the order does not depend on the listing."""
    key = seeded_uniform([sha256[i] for i in indices], seed, "order")
    ordered = indices[np.lexsort((indices, key))]
    return ordered[interleave(labels[ordered])].astype(np.int64)


def balance(indices: np.ndarray, labels: np.ndarray, mode: str, seed: int = 0) -> np.ndarray:
    """Resample `indices` so every class is equally frequent (undersample/oversample); other modes keep them."""
    if mode not in ("undersample", "oversample"):
        return indices
    rng = np.random.default_rng(seed)
    groups = [indices[labels[indices] == c] for c in np.unique(labels[indices])]
    target = min(map(len, groups)) if mode == "undersample" else max(map(len, groups))
    picked = [
        rng.choice(g, target, replace=False)
        if len(g) >= target
        else np.concatenate([g, rng.choice(g, target - len(g))])
        for g in groups
    ]
    resampled = rng.permutation(np.concatenate(picked)).astype(np.int64)
    return resampled[interleave(labels[resampled])]


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Loss weights inversely proportional to class frequency (mean weight 1 over samples)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return (len(labels) / (num_classes * np.maximum(counts, 1))).astype(np.float32)


def split_rows(paths: Sequence[str], labels: Sequence[str], codes: np.ndarray) -> list[tuple[str, str, str]]:
    """splits.csv's rows (path, label, split), sorted by path so two sources' files can be diffed."""
    return sorted(zip(paths, labels, (SPLITS[c] for c in codes.tolist())))


def groups_across_splits(duplicates: list[dict], photos: dict[str, list[str]]) -> list[dict]:
    """The duplicate groups (report.json's `duplicates`) whose photos sit in more than one given split."""
    given = dict(zip(photos["path"], photos["split"]))
    groups = [{**g, "splits": [given[p] for p in g["paths"]]} for g in duplicates]
    return [g for g in groups if len(set(g["splits"]) - {""}) > 1]


def write_crossing(path: Path, groups: list[dict]) -> None:
    """duplicates_across_splits.csv: `group,path,label,split`, a row per photo of each crossing group."""
    rows = [
        (str(n), p, label, split)
        for n, g in enumerate(groups, start=1)
        for p, label, split in zip(g["paths"], g["labels"], g["splits"])
    ]
    replace_atomic(path, lambda f: write_csv(f, ("group", "path", "label", "split"), rows), binary=False)
