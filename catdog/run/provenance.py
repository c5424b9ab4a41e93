"""What produced a run: the code (git commit, and a hash of uncommitted changes), the command, the library versions,
the hardware and the data, written to `provenance.json` in the run dir and into every checkpoint it saves."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytorch_lightning as pl
import torch

from catdog.sweeps.study import shown_override

CHECKPOINT_KEY = "catdog_provenance"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# what a run executes, relative to the checkout: an untracked file here can change a run, one elsewhere cannot
CODE = ("catdog", "train.py")  # the configs are catdog/configs (configs/ links to it)
# distribution names as pip knows them
PACKAGES = ("torch", "pytorch-lightning", "hydra-core", "opencv-python-headless", "numpy")


def _git(root: Path, *args: str) -> str | None:
    """stdout of a git command in `root`; None outside a checkout or without git."""
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.decode("utf-8", "surrogateescape") if proc.returncode == 0 else None


def git_state(root: Path = PROJECT_ROOT, exclude: tuple[str, ...] = (), code: tuple[str, ...] = CODE) -> dict:
    """The checkout's state, all None unless `root` is a checkout's top (paths in `exclude` left out):

    `git_commit`; `git_untracked`, {path: sha256} of the untracked files (not ignored) among the `code` paths, what
    a run executes (untracked files elsewhere, a folder of photos or notes, change no run and are left out);
    `git_dirty`, whether there are tracked changes or such files; `git_diff_sha256`, when dirty, the sha256 of
    `git diff HEAD` followed by a `untracked <path> <sha256>` line per untracked file.
    """
    top = _git(root, "rev-parse", "--show-toplevel")
    commit = _git(root, "rev-parse", "HEAD")
    # an installed copy (site-packages) inside some other checkout is not that checkout's code
    if commit is None or top is None or Path(top.strip()).resolve() != Path(root).resolve():
        return {"git_commit": None, "git_dirty": None, "git_diff_sha256": None, "git_untracked": None}
    excluded = [f":(exclude){p}" for p in exclude]
    diff = _git(root, "diff", "HEAD", "--binary", "--", ".", *excluded) or ""
    listed = _git(root, "ls-files", "-z", "--others", "--exclude-standard", "--", *code, *excluded) or ""
    untracked = {path: _file_sha256(Path(root) / path) for path in sorted(filter(None, listed.split("\0")))}
    dirty = bool(diff or untracked)
    record = diff + "".join(f"untracked {path} {digest}\n" for path, digest in untracked.items())
    return {
        "git_commit": commit.strip(),
        "git_dirty": dirty,
        "git_diff_sha256": hashlib.sha256(record.encode("utf-8", "surrogateescape")).hexdigest()
        if dirty
        else None,
        "git_untracked": untracked,
    }


def _file_sha256(path: Path) -> str | None:
    """sha256 of a file's bytes; None where it cannot be read (gone since git listed it, no permission)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    """The CPU's marketing name (/proc/cpuinfo on Linux), else what the platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def hydra_overrides() -> list[str] | None:
    """The overrides of the current Hydra job (None outside one)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return list(HydraConfig.get().overrides.task)


def collect(data_fingerprint: str | None = None, root: Path = PROJECT_ROOT) -> dict:
    """The provenance of a run started now from this process; `data_fingerprint` names the data cache."""
    return {
        **git_state(root),
        "command": [sys.executable, *map(shown_override, sys.argv)],
        "overrides": hydra_overrides(),
        "versions": {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES}},
        "cpu": cpu_model(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "data_fingerprint": data_fingerprint,
    }


class RecordProvenance(pl.Callback):
    """Puts the run's provenance into every checkpoint, under `catdog_provenance`."""

    def __init__(self, provenance: dict):
        self.provenance = provenance

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = self.provenance
