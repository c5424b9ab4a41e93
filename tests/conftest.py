"""Fixtures: a generated PetImages-like folder, the shared real data where this machine has it, and a study database
(SQLite, or on a throwaway PostgreSQL server)."""

from __future__ import annotations

import os
import tempfile

# One OpenMP thread per torch process, set before torch (or numpy) is imported here and inherited by every train.py,
# DDP rank and server the tests start: the suite runs one worker per core (pytest -n auto) beside those processes,
# and torch's default of a thread per core makes its threads spin-wait for each other (the tiny runs of
# test_tune, test_whiten and the resumes of test_resume: 62 s of CPU time with the default, 16 s with one).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# `auto` speed settings cache their timings under $XDG_CACHE_HOME/catdog (catdog/run/calibrate.py): the suite's
# go to a folder of its own, not the user's home
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="catdog-test-cache-")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from helpers import SHARED_DATA, write_class_folders  # noqa: E402
from postgres import new_database, postgres_server  # noqa: E402


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """PetImages-like: PetImages/Cat/*.jpg and PetImages/Dog/*.jpg, 20 each."""
    return write_class_folders(tmp_path / "PetImages")


@pytest.fixture
def shared_zip() -> Path:
    path = SHARED_DATA / "PetImages-180.zip"
    if not path.exists():
        pytest.skip("../shared/data is not present (only on the project's own machines)")
    return path


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for this test process, started when a test first asks for it, stopped at the end."""
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path) -> str:
    """The URL of a fresh, empty study database: a SQLite file, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/study.db"
    return new_database(request.getfixturevalue("postgres"))
