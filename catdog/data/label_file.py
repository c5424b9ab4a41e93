"""Label files: `data.source=labels.csv` with columns `path,label` and an optional `split` (train, val or test).

Paths are relative to the CSV's folder, or absolute. A listed file that is missing is a skipped photo in the report
(as any unreadable one); a row with an empty label or an unknown split, and a missing column, are one error naming
the row as a spreadsheet numbers it (the header is row 1).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from catdog.data.filenames import passed_over, printable
from catdog.data.split_folders import split_of
from catdog.errors import CatdogError

COLUMNS = ("path", "label")


def is_label_file(path: Path) -> bool:
    return path.name.lower().endswith(".csv")


def read_label_file(path: Path) -> tuple[list[str], list[str], list[str]]:
    """(paths, labels, given splits: "" per row without a split column) of every row of a labels CSV."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise CatdogError(f"data.source={path}: cannot be read as a CSV ({e}).") from e
    header = [c.strip().lower() for c in rows[0]] if rows else []
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise CatdogError(
            f"data.source={path}, row 1: no {' or '.join(missing)} column (the header is "
            f"{','.join(rows[0]) if rows else 'empty'}). Start the file with the header path,label[,split]."
        )
    column = {name: header.index(name) for name in (*COLUMNS, "split") if name in header}
    paths, labels, given = [], [], []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line, as a spreadsheet may leave at the end
        where = f"data.source={path}, row {number}"
        values = {name: row[j].strip() if j < len(row) else None for name, j in column.items()}
        if (
            values["path"] is None
            or values["label"] is None
            or ("split" in column and values["split"] is None)
        ):
            raise CatdogError(
                f"{where}: {len(row)} values where the header has {len(header)}. Fill in every column."
            )
        if not values["label"]:
            raise CatdogError(
                f"{where}: empty label for {values['path']}. Give its class, or remove the row."
            )
        if not values["path"]:
            raise CatdogError(f"{where}: empty path. Give the photo's path (relative to the CSV's folder).")
        paths.append(values["path"])
        labels.append(values["label"])
        given.append(split_of(values["split"] or "", where) if "split" in column else "")
    if not paths:
        raise CatdogError(
            f"data.source={path}: no rows below the header. List one photo per row: path,label."
        )
    return paths, labels, given


def file_stamp(folder: Path, path: str) -> tuple[int, float]:
    """(size, mtime) of a listed file, for the cache key; (-1, 0) for one that is missing (skipped when read)."""
    try:
        st = os.stat(os.path.join(folder, path))
    except OSError:
        return -1, 0.0
    return st.st_size, st.st_mtime


def list_label_file(csv_path: Path, split_folders: str | bool):
    """(paths, labels, given splits, ignored [{"path", "reason"}], cache-key stamps) of the photos a labels CSV
    lists, less those the file-name rule passes over; its split column is dropped with data.split_folders=false."""
    paths, labels, given = read_label_file(csv_path)
    if split_folders is False:
        given = [""] * len(paths)
    elif split_folders is True and not any(given):
        raise CatdogError(
            f"data.split_folders=true: data.source={csv_path} has no split column. Add one (train, val or test "
            "per row), or set data.split_folders=auto."
        )
    reasons = [passed_over(os.path.basename(p)) for p in paths]
    ignored = [{"path": printable(p), "reason": r} for p, r in zip(paths, reasons) if r]
    keep = [i for i, r in enumerate(reasons) if r is None]
    # the label and split are in the key: editing a row rebuilds the cache
    stamps = [(paths[i], *file_stamp(csv_path.parent, paths[i]), labels[i], given[i]) for i in keep]
    return *([seq[i] for i in keep] for seq in (paths, labels, given)), ignored, stamps
