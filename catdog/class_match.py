"""A labelled folder's classes matched to a checkpoint's: by name, case-blind, or as evaluate's `classes=` maps them.

Labels are class indices in sorted name order, so a folder's `Hund/`, `Katze/` (0, 1) read as the checkpoint's `Cat`,
`Dog` (0, 1) would invert every label: classes are matched by name, never by position. A folder may hold a subset of
the checkpoint's classes; a name that matches none is one error that says how to map it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from catdog.errors import CatdogError, did_you_mean
from catdog.rules import ConfigErrors

EXAMPLE = "classes='{Hund: Dog, Katze: Cat}'"


def check_mapping(mapping, model_classes: list[str], ckpt_path: str) -> dict[str, str]:
    """`classes=` as {folder name: the checkpoint's class, as the checkpoint spells it}; every problem at once: not
    a mapping, a class the checkpoint does not have, a folder named twice (case-blind), two folders mapped to one
    class. None: {}."""
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping) or not all(isinstance(v, str) for v in mapping.values()):
        raise CatdogError(
            f"classes={mapping!r} is invalid: expected a mapping of class folder names to the checkpoint's "
            f"classes ({', '.join(model_classes)}), e.g. {EXAMPLE}."
        )
    spelled = {c.lower(): c for c in model_classes}
    problems: list[str] = []
    resolved: dict[str, str] = {}
    folders: dict[str, str] = {}
    for folder, target in mapping.items():
        folder = str(folder)
        if folder.lower() in folders:
            problems.append(f"classes names the folder {folder} twice ({folders[folder.lower()]}, {folder}).")
        folders[folder.lower()] = folder
        if target.lower() not in spelled:
            problems.append(
                f"classes.{folder}={target}: not a class of ckpt_path={ckpt_path}"
                f"{did_you_mean(target, model_classes)}"
            )
        else:
            resolved[folder] = spelled[target.lower()]
    for target in sorted(set(resolved.values())):
        sources = [f for f, t in resolved.items() if t == target]
        if len(sources) > 1:
            problems.append(
                f"classes maps {' and '.join(sources)} to {target}: each of the checkpoint's classes takes "
                "one folder (move the photos into one folder, or score them one at a time)."
            )
    if len(problems) == 1:
        raise CatdogError(problems[0])
    if problems:
        raise ConfigErrors(problems)
    return resolved


def class_indices(
    data_classes: list[str], model_classes: list[str], mapping: dict[str, str], source: str, ckpt_path: str
) -> np.ndarray:
    """For each class of the data (its label), the index of that class in the checkpoint: the `mapping`
    (check_mapping's) where it names the folder, else the checkpoint's class of the same name, case-blind. A
    mapped folder the data lacks, a class that matches none, or two folders on one class: one error."""
    by_name = {c.lower(): i for i, c in enumerate(model_classes)}
    mapped = {folder.lower(): target for folder, target in mapping.items()}
    lacking = [f for f in mapping if f.lower() not in {c.lower() for c in data_classes}]
    if lacking:
        raise CatdogError(
            f"classes.{lacking[0]}: data.source={source} has no class folder of that name"
            f"{did_you_mean(lacking[0], data_classes)}"
        )
    indices = [by_name.get(mapped.get(c.lower(), c).lower(), -1) for c in data_classes]
    unmatched = [c for c, i in zip(data_classes, indices) if i < 0]
    if unmatched:
        template = ", ".join(f"{c}: CLASS" for c in unmatched)
        raise CatdogError(
            f"data.source={source}: {'classes' if len(unmatched) > 1 else 'class'} {', '.join(unmatched)} "
            f"{'are' if len(unmatched) > 1 else 'is'} none of the classes of ckpt_path={ckpt_path} "
            f"({', '.join(model_classes)}). Map each to one of them: classes='{{{template}}}' (e.g. {EXAMPLE})."
        )
    for i in set(indices):
        folders = [c for c, j in zip(data_classes, indices) if j == i]
        if len(folders) > 1:
            raise CatdogError(
                f"data.source={source}: classes {' and '.join(folders)} both match {model_classes[i]} of "
                f"ckpt_path={ckpt_path}: map one of them to another class with classes=, or leave it out."
            )
    return np.asarray(indices, dtype=np.int64)
