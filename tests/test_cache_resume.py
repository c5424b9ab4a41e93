"""A cache built on the disk as it is decoded: prepare's memory does not grow with the pixels, and a prepare killed
mid-decode resumes where it stopped and ends with the very bytes of an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from helpers import ROOT, photo_like, run_module

from catdog.data.building import Build, Decoded


def photo_folder(root, n, size=96):
    """n photo-like JPEGs (size px) in Cat/ and Dog/, and one empty file (a skipped one: its row is left out)."""
    for c in ("Cat", "Dog"):
        (root / c).mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(root / ("Cat", "Dog")[i % 2] / f"{i}.jpg"), photo_like(size, size, i))
    (root / "Dog" / "empty.jpg").write_bytes(b"")
    return root


def test_prepares_peak_memory_does_not_grow_with_the_decoded_pixels(tmp_path):
    from benchmarks.scale import timed_prepare

    folders = [photo_folder(tmp_path / f"photos{n}", n, size=48) for n in (100, 1200)]
    rss = [timed_prepare(f, tmp_path / f"cache-{f.name}", 256)["peak_rss_mb"] for f in folders]
    # 1,200 x 256 x 256 x 3 bytes = 236 MB of cache; gathered in memory before it was written (as catdog did), the
    # second peak was 100 MB above the first (the rest hid below the peak of the imports): 441 and 541 MB
    assert rss[1] - rss[0] < 20, rss


def test_a_prepare_killed_mid_decode_resumes_to_the_same_cache_byte_for_byte(tmp_path):
    source, cache = photo_folder(tmp_path / "photos", 640), tmp_path / "cache"
    # one process: chunks of 128 files, journaled as they finish (the first at once)
    data = [f"data.source={source}", f"data.cache_dir={cache}", "data.resolution=32", "data.channels=3"]
    data += ["data.num_workers=1", "data.progress=false"]
    assert run_module("catdog.prepare", *data).returncode == 0
    os.rename(cache, tmp_path / "reference")
    (reference,) = (tmp_path / "reference").iterdir()

    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "CATDOG_DATA")}
    proc = subprocess.Popen([sys.executable, "-m", "catdog.prepare", *data], cwd=ROOT, env=env)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if any(j.stat().st_size for j in cache.glob(".*.tmp/journal.jsonl")):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    assert proc.wait() == -signal.SIGKILL
    (journal,) = cache.glob(".*.tmp/journal.jsonl")
    assert 1 <= len(journal.read_text().splitlines()) < 6  # killed mid-decode: some of the 6 chunks done

    resumed = run_module("catdog.prepare", *data)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming the build of" in resumed.stderr and "of 641 files already decoded" in resumed.stderr
    (built,) = cache.iterdir()  # published; no temporary left
    assert built.name == reference.name
    files = sorted(p.name for p in reference.iterdir())
    assert files == sorted(p.name for p in built.iterdir()) and "images.npy" in files
    for name in files:
        assert (built / name).read_bytes() == (reference / name).read_bytes(), name
    assert np.load(built / "images.npy").shape == (640, 32, 32, 3)


def test_a_build_journal_cut_short_by_a_kill_resumes_from_its_last_whole_line(tmp_path):
    directory = tmp_path / "cache" / "photos-8px-1ch-0123456789abcdef"
    with Build(directory, (6, 8, 8, 1)) as build:
        build.record(
            {
                "start": 0,
                "ok": "101",
                "failures": [[1, "empty file"]],
                "sizes": [[9, 9], [8, 8]],
                "sha256": ["a" * 64, "b" * 64],
                "phash": [1, 2**63],
            }
        )
        build.flush()
        tmp = build.tmp
    with open(tmp / "journal.jsonl", "a") as f:
        f.write('{"start": 3, "ok": "1')  # the kill landed mid-line
    # the build's owner is gone: a process id no process has (the kernel's pid_max is at most 2^22)
    dead = tmp.with_name(tmp.name.replace(f"-{os.getpid()}.", f"-{2**22 + 1}."))
    os.rename(tmp, dead)
    again = Build(directory, (6, 8, 8, 1))
    assert again.tmp != dead and not dead.exists()
    decoded: Decoded = again.decoded
    assert decoded.done.tolist() == [True] * 3 + [False] * 3 and decoded.ok.tolist()[:3] == [
        True,
        False,
        True,
    ]
    assert decoded.failures == {1: "empty file"} and decoded.phash[2] == 2**63
    assert again.todo(2) == [(3, 2), (5, 1)]
    assert (again.tmp / "journal.jsonl").read_text().count("\n") == 1  # the cut line is gone


def test_ctrl_c_keeps_the_build_for_the_next_one_and_an_error_removes_it(tmp_path):
    directory = tmp_path / "cache" / "photos-8px-1ch-0123456789abcdef"
    chunk = {"start": 0, "ok": "1", "failures": [], "sizes": [[9, 9]], "sha256": ["a" * 64], "phash": [3]}
    with pytest.raises(KeyboardInterrupt), Build(directory, (2, 8, 8, 1)) as build:
        build.record(chunk)
        build.record({**chunk, "start": 1})  # within the second: journaled on the way out
        raise KeyboardInterrupt
    assert build.tmp.is_dir()
    # the same process, later (a notebook): it takes its own interrupted build back
    again = Build(directory, (2, 8, 8, 1))
    assert again.decoded.done.all() and again.todo(8) == [] and not build.tmp.exists()
    with pytest.raises(ValueError), again:
        raise ValueError("a bug")
    assert not again.tmp.exists() and not list(directory.parent.iterdir())
