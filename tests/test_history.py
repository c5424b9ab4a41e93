"""History lives in the record (RESULTS.md, docs/benchmark-log.md), not in the code: no comment or docstring under
catdog/ or configs/ names a commit, an issue or a machine. The reason and the number that explain the code stay."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest
from helpers import ROOT

HISTORY = re.compile(
    r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b"  # a commit hash: 7+ hex digits, letters and digits
    r"|\bissues? #?\d+|#\d+\b"  # an issue
    r"|\b(?:EPYC|Xeon|Ryzen|Threadripper|Zen ?\d|[AHV]100|H200|GH200|B200)\b",  # a machine
    re.IGNORECASE,
)


def python_comments(source: str) -> list[tuple[int, str]]:
    """(line, text) of every comment and docstring of a module."""
    found = [
        (tok.start[0], tok.string)
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:
                found.append((node.body[0].lineno, doc))
    return found


def yaml_comments(source: str) -> list[tuple[int, str]]:
    """(line, text) of every comment: from a # at the start of a line or after a space."""
    return [
        (number, found.group(1))
        for number, line in enumerate(source.splitlines(), start=1)
        if (found := re.search(r"(?:^|\s)#(.*)$", line))
    ]


def history_in(path: Path) -> list[str]:
    source = path.read_text()
    comments = python_comments(source) if path.suffix == ".py" else yaml_comments(source)
    return [f"{path}:{line}: {m.group(0)!r}" for line, text in comments for m in HISTORY.finditer(text)]


@pytest.mark.parametrize(
    "text, named",
    [
        ("# 2x at 5231da1 on the Xeon (issue 26)", ["5231da1", "Xeon", "issue 26"]),
        (
            "# on a lent H200, commit e795399b42e0e9ad4b4a3e6edd00e90658cfebe5",
            ["H200", "e795399b42e0e9ad4b4a3e6edd00e90658cfebe5"],
        ),
        ("# Zen 4 EPYC, see #31", ["Zen 4", "EPYC", "#31"]),
        ("# 100000000 pixels, 1.16x at batch 64 on a 2-core CPU with AMX; a defaced cache", []),
    ],
)
def test_the_check_finds_hashes_issues_and_machines_and_not_numbers(tmp_path, text, named):
    path = tmp_path / "a.yaml"
    path.write_text(f"key: 1   {text}\n")
    assert [found.split(": ", 1)[1] for found in history_in(path)] == [repr(n) for n in named]
    module = tmp_path / "a.py"
    module.write_text(f'"""{text[2:]}"""\n\nx = "5231da1 in a string is data, not a comment"  {text}\n')
    assert len(history_in(module)) == 2 * len(named)


def test_no_commit_issue_or_machine_in_the_comments_of_the_package_and_configs():
    files = sorted((ROOT / "catdog").rglob("*.py")) + sorted((ROOT / "configs").rglob("*.yaml"))
    assert len(files) > 50
    found = [hit for path in files for hit in history_in(path)]
    assert not found, (
        "history belongs in RESULTS.md or docs/benchmark-log.md, not in comments:\n" + "\n".join(found)
    )
