"""audit.csv's rows: cleanlab's label issues and label quality from the out-of-fold probabilities, the outlier
scores of image_stats.py, and the duplicate groups and label conflicts the cache already found (report.json).

Each photo gets at most one issue: `conflict` (its copies are filed under different classes), else `duplicate` (a
near copy of a photo listed before it in its group: what the hashes show outranks what a model guesses, and the
photo it copies carries any label or outlier issue), else `label` or `outlier` (the one whose score is lower, by
rank, when both apply). Copies with the same bytes are one photo to catdog (its identity is its content, which is
what data.exclude leaves out), so they share the group but only distinct contents are flagged. Rows come flagged
first, each part from the lowest score up (label or outlier, whichever ranks lower).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from catdog.data.cache import CachedArrays

# below this out-of-fold accuracy most label flags are the fold models' own mistakes: on PetImages-180 the audit's
# folds reach 94% with 25k photos (and even then 13 of the top 100 flags were real problems), about 70% with 300
LABEL_MIN_ACCURACY = 0.9
COLUMNS = ("path", "label", "suggested", "label_score", "outlier_score", "duplicate_group", "issue", "sha256")
KINDS = ("label", "outlier", "duplicate", "conflict")


@dataclass
class Audit:
    rows: list[dict]  # COLUMNS per photo, worst first
    order: np.ndarray  # the cache index of each row


def label_issues(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab's confident-learning label issues (a mask) and label quality scores (self-confidence, 0-1)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    return find_label_issues(labels, probs), get_label_quality_scores(labels, probs)


def duplicate_groups(arrays: CachedArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From report.json: each photo's duplicate group (1, 2, ... in the report's order; 0 for none), whether it is
    in a label conflict, and whether it is a near copy of a photo listed before it in its group."""
    n = len(arrays.labels)
    index = {p: i for i, p in enumerate(arrays.photos["path"])}
    sha256 = arrays.photos["sha256"]
    group, conflict, extra = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    for number, entry in enumerate(arrays.report.get("duplicates", []), start=1):
        members = [index[p] for p in entry["paths"] if p in index]
        group[members] = number
        kept = {sha256[members[0]]} if members else set()
        for i in members:
            extra[i] = sha256[i] not in kept
            kept.add(sha256[i])
    for entry in arrays.report.get("label_conflicts", []):
        conflict[[index[p] for p in entry["paths"] if p in index]] = True
    return group, conflict, extra


def rank_of(values: np.ndarray) -> np.ndarray:
    """Each value's rank from the lowest (0) up, divided by the count: label and outlier scores on one scale."""
    return np.argsort(np.argsort(values, kind="stable"), kind="stable") / max(len(values), 1)


def audit_rows(
    arrays: CachedArrays, probs: np.ndarray, outlier_score: np.ndarray, outlier: np.ndarray
) -> Audit:
    """Every photo once, with its issue, worst first: `probs` out of fold (folds.py), `outlier_score` and the
    `outlier` flags from image_stats.py."""
    labels = arrays.labels
    is_label_issue, label_score = label_issues(labels, probs)
    group, conflict, extra = duplicate_groups(arrays)
    label_rank, outlier_rank = rank_of(label_score), rank_of(outlier_score)
    issue = np.full(len(labels), "", dtype=object)
    issue[is_label_issue] = "label"
    issue[outlier & (~is_label_issue | (outlier_rank < label_rank))] = "outlier"
    issue[extra] = "duplicate"
    issue[conflict] = "conflict"
    order = np.lexsort((np.arange(len(labels)), np.minimum(label_rank, outlier_rank), issue == ""))
    classes, photos = arrays.classes, arrays.photos
    rows = [
        {
            "path": photos["path"][i],
            "label": classes[labels[i]],
            "suggested": classes[int(probs[i].argmax())],
            "label_score": f"{label_score[i]:.4f}",
            "outlier_score": f"{outlier_score[i]:.4f}",
            "duplicate_group": str(group[i]) if group[i] else "",
            "issue": issue[i],
            "sha256": photos["sha256"][i],
        }
        for i in order.tolist()
    ]
    return Audit(rows=rows, order=order)


def summary(rows: list[dict]) -> str:
    """`N photos: a label, b outlier, c duplicate, d conflict (e flagged)`."""
    counts = Counter(r["issue"] for r in rows)
    flagged = sum(counts[k] for k in KINDS)
    kinds = ", ".join(f"{counts[k]:,} {k}" for k in KINDS)
    return f"{len(rows):,} photos: {kinds} ({flagged:,} flagged, {flagged / max(len(rows), 1):.1%})"


def what_scores_need(
    n: int, labels: np.ndarray, probs: np.ndarray, outlier_min: int
) -> tuple[str, list[str]]:
    """The audit's word on its own scores: a line of what each rests on, and a warning for each score that rests
    on too little (fewer than `outlier_min` photos for the outlier score; fold models below LABEL_MIN_ACCURACY out
    of fold for the label score)."""
    accuracy = float((probs.argmax(1) == labels).mean()) if n else 0.0
    line = (
        f"outlier scores compare image statistics across the {n:,} photos (they need {outlier_min} or more); "
        f"label scores come from fold models {accuracy:.1%} accurate on the photos they did not train on (they "
        f"need {LABEL_MIN_ACCURACY:.0%} or more)"
    )
    warnings = []
    if n < outlier_min:
        warnings.append(
            f"{n} photos: the outlier score compares each photo with the others' statistics, and below "
            f"{outlier_min} photos their quartiles rest on a handful each: read the outlier column as a hint."
        )
    if accuracy < LABEL_MIN_ACCURACY:
        warnings.append(
            f"The fold models are {accuracy:.1%} accurate on the photos they did not train on (under "
            f"{LABEL_MIN_ACCURACY:.0%}): most label flags are their own mistakes, not mislabeled photos. More "
            "photos make them better (thousands: the audit's folds reach 94% on 25,000 photos, about 70% on 300); "
            "the outlier and duplicate flags do not depend on them."
        )
    return line, warnings
