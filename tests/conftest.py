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
# torch.compile's code generation in the compiling process itself: Inductor's default on 2 cores starts a pool of
# compile workers (10 processes in test_console's compiled run) that compete with the other xdist worker
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
# `auto` speed settings cache their timings under $XDG_CACHE_HOME/catdog (catdog/run/speed.py): the suite's
# go to a folder of its own, not the user's home
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="catdog-test-cache-")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from helpers import SHARED_DATA, write_class_folders  # noqa: E402
from postgres import new_database, postgres_server  # noqa: E402

# The files that cost the most, costliest first (CPU seconds of each at ae99d37 on the 2-core Xeon, issue 26): with
# `make test`'s `--dist loadfile --no-loadscope-reorder` the workers start on them and the short files fill the end.
# xdist's own order (most tests first) handed out test_sweeps, test_optuna_study and test_debug (200 s, 11 tests)
# among the last, so that one worker still ran them a minute after the other had finished.
COSTLIEST_FILES = (
    "test_bench.py",  # 122
    "test_sweeps.py",  # 100
    "test_train.py",  # 97: one epoch of the tutorial on the real photos, 58
    "test_resume.py",  # 77
    "test_optuna_study.py",  # 62
    "test_disk_full.py",  # 46
    "test_debug.py",  # 42
    "test_serve.py",  # 39
    "test_study.py",  # 36
    "test_card.py",  # 36
    "test_export.py",  # 33
    "test_dashboard.py",  # 26
    "test_console.py",  # 18
    "test_runtime.py",  # 17
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The costliest files first, each file's tests in their own order, the rest as collected."""
    rank = {name: i for i, name in enumerate(COSTLIEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


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
