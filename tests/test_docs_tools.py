"""The scripts that retake the README's pictures (docs/screenshots.py, docs/sweep_report.py): by default they write
under outputs/ (ignored by git), never over the repository's pictures; `--out docs` is how to replace those."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT

pytest.importorskip("playwright")


def script(name: str):
    """docs/<name>.py as a module (docs/ is no package: the scripts are run by path)."""
    spec = importlib.util.spec_from_file_location(f"docs_{name}", ROOT / "docs" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tracked(paths: list[Path]) -> list[str]:
    """Which of `paths` (relative to the repository, as run from its root) git tracks."""
    names = [str(p) for p in paths]
    return subprocess.run(
        ["git", "ls-files", *names], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()


def ignored(paths: list[Path]) -> list[str]:
    names = [str(p) for p in paths]
    return subprocess.run(
        ["git", "check-ignore", *names], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()


def test_screenshots_go_to_outputs_unless_told_to_replace_the_readmes():
    screenshots = script("screenshots")
    default = list(screenshots.pictures(screenshots.parse_args(["run", "--photo", "cat.jpg"])).values())
    assert len(default) == 4 and tracked(default) == [] and set(ignored(default)) == set(map(str, default))
    replacing = list(
        screenshots.pictures(screenshots.parse_args(["run", "--photo", "a.jpg", "--out", "docs"])).values()
    )
    assert set(tracked(replacing)) == set(map(str, replacing))  # the README's pictures, by their names


def test_the_sweep_report_goes_to_outputs_unless_told_to_replace_the_readmes():
    sweep_report = script("sweep_report")
    default = sweep_report.parse_args(["sweep"]).out
    assert tracked([default]) == [] and ignored([default]) == [str(default)]
    assert tracked([sweep_report.parse_args(["sweep", "--out", "docs/sweep-report.png"]).out]) == [
        "docs/sweep-report.png"
    ]
