"""provenance.json's code state: the commit, whether the tree is dirty and a hash of the diff, null outside git."""

from __future__ import annotations

import hashlib
import shutil

import pytest
from helpers import git, git_repo

from catdog.run.provenance import collect, git_state

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture
def repo(tmp_path):
    return git_repo(tmp_path / "repo")


def test_a_clean_checkout_records_its_commit(repo):
    state = git_state(repo)
    assert state == {
        "git_commit": git(repo, "rev-parse", "HEAD").strip(),
        "git_dirty": False,
        "git_diff_sha256": None,
    }


def test_a_change_makes_it_dirty_with_the_hash_of_the_diff(repo):
    (repo / "a.py").write_text("x = 2\n")
    state = git_state(repo)
    diff = git(repo, "diff", "HEAD", "--binary")
    assert "x = 2" in diff and state["git_dirty"] is True
    assert state["git_diff_sha256"] == hashlib.sha256(diff.encode()).hexdigest()
    (repo / "a.py").write_text("x = 3\n")
    assert git_state(repo)["git_diff_sha256"] != state["git_diff_sha256"]


def test_an_untracked_file_makes_it_dirty(repo):
    (repo / "new.py").write_text("y = 1\n")
    assert git_state(repo)["git_dirty"] is True


def test_a_folder_inside_another_checkout_is_not_a_checkout(repo):
    # e.g. an installed copy in a virtualenv that sits in the user's own project
    (repo / "site-packages").mkdir()
    assert git_state(repo / "site-packages")["git_commit"] is None


def test_outside_a_checkout_the_fields_are_null(tmp_path):
    provenance = collect("PetImages-64px-3ch-0123", root=tmp_path)
    assert (provenance["git_commit"], provenance["git_dirty"], provenance["git_diff_sha256"]) == (
        None,
        None,
        None,
    )
    assert provenance["data_fingerprint"] == "PetImages-64px-3ch-0123" and provenance["overrides"] is None
    assert set(provenance["versions"]) == {
        "python",
        "torch",
        "pytorch-lightning",
        "hydra-core",
        "opencv-python-headless",
        "numpy",
    }
    assert all(provenance["versions"].values())
