"""`data.exclude`: photos left out of every split, named in a file and kept out by their content, not their name.

The file is an audit.csv (`python -m catdog.audit`: the rows whose `issue` is not empty, by their `sha256`
column, else their `path`) or plain text, one photo per line: a path as in splits.csv, or a content hash. Paths are
turned into content hashes with the data as it is now, so a photo renamed or re-zipped later stays excluded when
the file holds hashes (an audit.csv always does), and an identical copy under another name is excluded with it.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from catdog.data.settings import missing_exclude_file
from catdog.errors import CatdogError

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def read_exclusions(path: str | Path) -> set[str]:
    """The photos an exclusion file names: content hashes and paths as written (blank lines and # comments
    skipped; in a CSV with an `issue` column, only its flagged rows)."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise missing_exclude_file(path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise CatdogError(f"data.exclude={path}: cannot be read ({e}).") from e
    lines = text.splitlines()
    header = next(csv.reader(lines[:1]), [])
    if "path" in header and "issue" in header:
        rows = [r for r in csv.DictReader(lines) if (r.get("issue") or "").strip()]
        return {(r.get("sha256") or "").strip() or r["path"] for r in rows}
    return {line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")}


def exclusion_mask(path: str | Path | None, photos: Mapping[str, Sequence[str]]) -> np.ndarray | None:
    """Which photos (a cache's photos table) `data.exclude` names, by content: None without a file; an error when
    the file names none of them."""
    if path is None or str(path).strip() in ("", "None"):
        return None
    named = read_exclusions(path)
    hashes = {h for h in named if SHA256.match(h)}
    hashes |= {h for p, h in zip(photos["path"], photos["sha256"]) if p in named}
    mask = np.isin(np.asarray(photos["sha256"]), sorted(hashes))
    if named and not mask.any():
        raise CatdogError(
            f"data.exclude={path}: none of the {len(named):,} photos it names is in data.source (by content "
            "hash or path as in splits.csv). Is it the audit of these photos?"
        )
    return mask


def exclusion_tag(mask: np.ndarray | None, sha256: Sequence[str]) -> str:
    """`-exclude<8 hex>`, a hash of the excluded photos' contents, for the folder of a split record ("" for none):
    two files that exclude the same photos share it."""
    if mask is None or not mask.any():
        return ""
    excluded = sorted({sha256[i] for i in np.flatnonzero(mask).tolist()})
    return "-exclude" + hashlib.sha256("\n".join(excluded).encode()).hexdigest()[:8]
