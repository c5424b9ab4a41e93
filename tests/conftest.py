"""Fixtures: a generated PetImages-like folder, and the shared real data where this machine has it."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import SHARED_DATA, write_class_folders


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
