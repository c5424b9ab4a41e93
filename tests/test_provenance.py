"""provenance.json's code state: the commit, whether the tree is dirty and a hash of the diff, null outside git."""

from __future__ import annotations

import hashlib
import shutil

import pytest
from helpers import git, git_repo

from catdog.run.provenance import CODE, PROJECT_ROOT, collect, git_state

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
        "git_untracked": {},
    }


def test_a_change_makes_it_dirty_with_the_hash_of_the_diff(repo):
    (repo / "a.py").write_text("x = 2\n")
    state = git_state(repo)
    diff = git(repo, "diff", "HEAD", "--binary")
    assert "x = 2" in diff and state["git_dirty"] is True
    assert state["git_diff_sha256"] == hashlib.sha256(diff.encode()).hexdigest()
    (repo / "a.py").write_text("x = 3\n")
    assert git_state(repo)["git_diff_sha256"] != state["git_diff_sha256"]


def test_an_untracked_file_of_the_code_makes_it_dirty_and_is_recorded(repo):
    (repo / "catdog" / "models").mkdir(parents=True)
    new = repo / "catdog" / "models" / "new.py"
    new.write_text("y = 1\n")
    state = git_state(repo)
    assert state["git_dirty"] is True
    assert state["git_untracked"] == {"catdog/models/new.py": hashlib.sha256(b"y = 1\n").hexdigest()}
    assert state["git_diff_sha256"] is not None  # what made it dirty has a hash, as a tracked change has
    new.write_text("y = 2\n")
    assert git_state(repo)["git_diff_sha256"] != state["git_diff_sha256"]
    (repo / "a.py").write_text("x = 2\n")  # a tracked change beside it: both in the hash
    both = git_state(repo)["git_diff_sha256"]
    new.unlink()
    assert git_state(repo)["git_diff_sha256"] not in (both, None)


def test_untracked_files_outside_the_code_and_ignored_ones_leave_it_clean(repo):
    (repo / "my photos" / "Cat").mkdir(parents=True)  # a folder of photos or notes beside the code
    (repo / "my photos" / "Cat" / "1.jpg").write_bytes(b"\xff\xd8")
    (repo / "notes.txt").write_text("try lr=0.01\n")
    (repo / ".gitignore").write_text("__pycache__/\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore")
    (repo / "catdog" / "__pycache__").mkdir(parents=True)
    (repo / "catdog" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    state = git_state(repo)
    assert (state["git_dirty"], state["git_diff_sha256"], state["git_untracked"]) == (False, None, {})


def test_the_code_paths_are_this_project_s():
    """The paths whose untracked files count are where this checkout keeps what a run executes."""
    assert all((PROJECT_ROOT / path).exists() for path in CODE)


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
    assert provenance["git_untracked"] is None
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
