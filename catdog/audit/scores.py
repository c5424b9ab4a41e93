"""audit.csv's rows: cleanlab's label issues and label quality from the out-of-fold probabilities, the outlier
flags of folds.py, and the duplicate groups and label conflicts the cache already found (report.json).

Each photo gets at most one issue: `conflict` (its copies are filed under different classes), else `label` or
`outlier` (the one whose score is lower, by rank, when both apply), else `duplicate` (a near copy of a photo
listed before it in its group). Copies with the same bytes are one photo to catdog (its identity is its content,
which is what data.exclude leaves out), so they share the group but only distinct contents are flagged. Rows come
flagged first, each part from the lowest score up (label or outlier, whichever ranks lower).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from catdog.audit.folds import OutOfFold
from catdog.data.cache import CachedArrays

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


def audit_rows(arrays: CachedArrays, oof: OutOfFold) -> Audit:
    """Every photo once, with its issue, worst first."""
    labels = arrays.labels
    is_label_issue, label_score = label_issues(labels, oof.probs)
    group, conflict, extra = duplicate_groups(arrays)
    label_rank, outlier_rank = rank_of(label_score), rank_of(oof.outlier_score)
    issue = np.full(len(labels), "", dtype=object)
    issue[extra] = "duplicate"
    issue[is_label_issue] = "label"
    issue[oof.outlier & (~is_label_issue | (outlier_rank < label_rank))] = "outlier"
    issue[conflict] = "conflict"
    order = np.lexsort((np.arange(len(labels)), np.minimum(label_rank, outlier_rank), issue == ""))
    classes, photos = arrays.classes, arrays.photos
    rows = [
        {
            "path": photos["path"][i],
            "label": classes[labels[i]],
            "suggested": classes[int(oof.probs[i].argmax())],
            "label_score": f"{label_score[i]:.4f}",
            "outlier_score": f"{oof.outlier_score[i]:.4f}",
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
