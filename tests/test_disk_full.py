"""A real full disk: a 3 MB tmpfs fills up while preparing the cache, while checkpointing and while writing
TensorBoard events and metrics. Each ends with one `error:` line naming the file, the full disk and the fix;
what was there before stays intact, no temporary file is left, and the next run after space is freed succeeds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import run_module, run_train, tiny_overrides, train_in_process

MB = 2**20


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs under tmp_path (needs root and a kernel that lets this process mount), unmounted after."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip() or 'mount failed'})")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def resize(disk: Path, mb: int) -> None:
    """Free space (or take it away) by changing the tmpfs's size."""
    subprocess.run(["mount", "-o", f"remount,size={mb}m", str(disk)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """A file that leaves `leave` bytes free on the disk."""
    st = os.statvfs(disk)
    filler = disk / "filler"
    filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - leave))
    return filler


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The run's single `error:` line (and that it failed with exit code 1 and no traceback)."""
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    print(lines[0])
    return lines[0]


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def prepare(*overrides: str) -> subprocess.CompletedProcess:
    return run_module("catdog.prepare", *overrides)


def test_full_disk_while_preparing_keeps_the_old_cache(small_disk, image_folder):
    cache = small_disk / "cache"
    data = [f"data.source={image_folder}", f"data.cache_dir={cache}", "data.progress=false"]
    assert prepare(*data, "data.resolution=36").returncode == 0
    (old,) = cache.iterdir()
    before = {p.name: p.read_bytes() for p in old.iterdir()}

    # 40 photos at 256x256 RGB: 7.9 MB of arrays for a 3 MB disk
    proc = prepare(*data, "data.resolution=256", "data.channels=3")
    line = error_line(proc)
    assert "No space left on the device" in line and str(cache) in line and "data.cache_dir" in line, line
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before
    assert list(cache.iterdir()) == [old] and not temp_files(small_disk)

    resize(small_disk, 20)
    assert prepare(*data, "data.resolution=256", "data.channels=3").returncode == 0
    assert len(list(cache.iterdir())) == 2


def checkpoint_run(source: Path, tmp_path: Path, disk: Path, *extra: str) -> list[str]:
    """A run with its run dir on the small disk and the cache elsewhere; the wide head makes checkpoints of
    ~0.8 MB (weights and Adam's two moments)."""
    return [*tiny_overrides(source, tmp_path), f"hydra.run.dir={disk}/run", "model.hidden=[2048]", *extra]


def test_full_disk_while_checkpointing_keeps_the_last_checkpoint(small_disk, image_folder, tmp_path):
    overrides = checkpoint_run(image_folder, tmp_path, small_disk)
    # the runs before and after the full disk in this process; the one that meets it as a user does
    train_in_process(*overrides)
    last = small_disk / "run" / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    assert len(before) > 0.5 * MB

    filler = fill(small_disk, leave=MB // 4)
    proc = run_train(*overrides, "ckpt_path=last", "trainer.max_epochs=2", check=False)
    line = error_line(proc)
    assert "No space left on the device" in line and "checkpoints" in line and "ckpt_path=last" in line, line
    assert last.read_bytes() == before and not temp_files(small_disk)

    filler.unlink()
    train_in_process(*overrides, "ckpt_path=last", "trainer.max_epochs=2")
    assert torch.load(last, weights_only=False)["epoch"] == 1


def test_full_disk_while_logging_names_the_file(small_disk, image_folder, tmp_path):
    """No checkpoints and no samples.png: the first writes to fail are TensorBoard's events (its writer thread
    names no file: the run dir is named)."""
    no_checkpoints = [
        "~callbacks.sample_grid",
        "~callbacks.model_checkpoint",
        "~callbacks.last_checkpoint",
        "~callbacks.save_on_interrupt",
        "+trainer.enable_checkpointing=false",
    ]
    overrides = [*tiny_overrides(image_folder, tmp_path), f"hydra.run.dir={small_disk}/run", *no_checkpoints]
    # room for Hydra's config files, not for the events (image summaries) and metrics
    filler = fill(small_disk, leave=32 * 1024)
    proc = run_train(*overrides, check=False)
    line = error_line(proc)
    assert "No space left on the device" in line and str(small_disk / "run") in line, line
    assert "paths.log_dir" in line, line
    assert not temp_files(small_disk)

    filler.unlink()
    train_in_process(*overrides)
    assert (small_disk / "run" / "metrics.json").is_file()


@pytest.mark.parametrize("multirun", [False, True], ids=["run", "sweep"])
def test_full_disk_before_the_run_starts(small_disk, image_folder, tmp_path, multirun):
    """Hydra writes its .hydra/ files (and a sweep's multirun.yaml) before catdog's code runs: a disk already full
    stops there too with the one line, and leaves no run dir behind."""
    out = small_disk / "runs"
    mode, dir_key = (["-m"], "hydra.sweep.dir") if multirun else ([], "hydra.run.dir")
    overrides = [*mode, *tiny_overrides(image_folder, tmp_path), f"{dir_key}={out}"]
    filler = fill(small_disk, leave=0)
    line = error_line(run_train(*overrides, check=False))
    assert "No space left on the device" in line and str(out) in line and "paths.log_dir" in line, line
    assert not out.exists()

    filler.unlink()
    run_train(*overrides)
    assert list(out.rglob("metrics.json"))


def test_a_first_checkpoint_on_a_full_disk_offers_no_resume(small_disk):
    from catdog.errors import CatdogError
    from catdog.run.resume import AtomicCheckpointIO

    fill(small_disk, leave=MB // 4)
    checkpoints = small_disk / "run" / "checkpoints"
    big = {"state_dict": {"w": torch.zeros(MB // 2)}}  # 2 MB of float32
    with pytest.raises(CatdogError) as first:
        AtomicCheckpointIO().save_checkpoint(big, checkpoints / "epoch000.ckpt")
    message = str(first.value)
    assert "first checkpoint, so there is none to resume from" in message and "run again" in message, message
    assert "previous" not in message and "ckpt_path=last" not in message
    # with last.ckpt beside it, that one is what a resume starts from
    torch.save({}, checkpoints / "last.ckpt")
    with pytest.raises(CatdogError, match=r"last\.ckpt beside it is intact.*resume with ckpt_path=last"):
        AtomicCheckpointIO().save_checkpoint(big, checkpoints / "epoch001.ckpt")
    assert not temp_files(small_disk)
