"""The array cache: hit and miss rules, report.json, damage detection, concurrent builders."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT

from catdog.data import dataset
from catdog.data.dataset import plan_workers, prepare_dataset, summarize
from catdog.data.settings import DataSettings
from catdog.errors import CatdogError


def prepare(source, cache, resolution=16, **kw):
    return prepare_dataset(
        DataSettings.from_config(
            dict(source=str(source), resolution=resolution, cache_dir=str(cache), progress=False, **kw)
        )
    )


@pytest.fixture
def count_decodes(monkeypatch):
    """How many times images were decoded (not loaded from the cache)."""
    calls = []
    real = dataset._decode_all

    def counting(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(dataset, "_decode_all", counting)
    return calls


def test_report_json_beside_the_memory_mapped_arrays(image_folder, tmp_path):
    arrays = prepare(image_folder, tmp_path / "cache", channels=3)
    report = json.loads((arrays.directory / "report.json").read_text())
    assert report["n_images"] == 40 and report["n_skipped"] == 0 and report["skipped"] == []
    assert report["per_class"] == {"Cat": 20, "Dog": 20}
    assert (report["resolution"], report["channels"]) == (16, 3)
    assert report["image_size"]["width"] == {"min": 40, "mean": 40.0, "max": 40}
    assert isinstance(arrays.images, np.memmap) and arrays.images.shape == (40, 16, 16, 3)
    assert np.bincount(arrays.labels).tolist() == [20, 20]
    text = summarize(report)
    assert "40 images (Cat: 20, Dog: 20) at 16x16x3; skipped 0" in text


def test_same_settings_hit_changed_settings_or_files_miss(image_folder, tmp_path, count_decodes):
    cache = tmp_path / "cache"
    first = prepare(image_folder, cache)
    again = prepare(image_folder, cache)
    assert again.directory == first.directory and len(count_decodes) == 1
    np.testing.assert_array_equal(again.images, first.images)

    sweep = {r: prepare(image_folder, cache, resolution=r).directory for r in (32, 50, 64)}
    assert len(count_decodes) == 4 and len(set(sweep.values()) | {first.directory}) == 4
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        p.name for p in [first.directory, *sweep.values()]
    )
    for r in (32, 50, 64):  # every swept resolution stays cached
        assert prepare(image_folder, cache, resolution=r).directory == sweep[r]
    assert len(count_decodes) == 4

    assert prepare(image_folder, cache, channels=3).directory != first.directory
    assert prepare(image_folder, cache, skip_truncated=False).directory != first.directory
    photo = image_folder / "Cat" / "0.jpg"
    st = photo.stat()
    os.utime(photo, (st.st_atime, st.st_mtime + 10))  # touched
    touched = prepare(image_folder, cache)
    assert touched.directory != first.directory
    (image_folder / "Dog" / "0.jpg").write_bytes((image_folder / "Dog" / "1.jpg").read_bytes())  # modified
    assert prepare(image_folder, cache).directory not in (first.directory, touched.directory)
    assert len(count_decodes) == 8


def test_damaged_cache_is_detected_warned_and_rebuilt(image_folder, tmp_path, count_decodes, caplog):
    first = prepare(image_folder, tmp_path / "cache")
    images = first.directory / "images.npy"
    expected = np.array(first.images)
    del first
    with open(images, "r+b") as f:
        f.truncate(images.stat().st_size // 2)
    rebuilt = prepare(image_folder, tmp_path / "cache")
    assert "is damaged" in caplog.text and "rebuilding" in caplog.text
    assert len(count_decodes) == 2
    np.testing.assert_array_equal(rebuilt.images, expected)


def test_worker_plan_uses_processes_only_when_worth_it():
    assert plan_workers(10, 8) == (1, 3)
    assert plan_workers(80, 2) == (2, 10)
    workers, chunk = plan_workers(25_000, 2)
    assert workers == 2 and chunk == dataset.CHUNK


# each builder waits, with its complete cache in its temporary folder, until the other one is there too: both
# have decoded everything before either publishes, so they overlap whatever the scheduling
RACING_BUILDER = """
import logging, os, sys, time
from pathlib import Path
from catdog.data.dataset import prepare_dataset
from catdog.data.settings import DataSettings

logging.basicConfig(level=logging.INFO)
barrier, real_rename = Path(sys.argv[3]), os.rename

def rename_when_both_built(src, dst):
    if Path(src).name.endswith(".tmp"):
        (barrier / str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while len(list(barrier.iterdir())) < 2:
            if time.monotonic() > deadline:
                sys.exit("the other builder never got to publishing")
            time.sleep(0.01)
    real_rename(src, dst)

os.rename = rename_when_both_built
a = prepare_dataset(DataSettings.from_config(dict(source=sys.argv[1], resolution=16, cache_dir=sys.argv[2], progress=False, num_workers=2)))
print(a.directory, int(a.images.sum()))
"""


def test_two_processes_preparing_the_same_cache_both_succeed(image_folder, tmp_path):
    cache, barrier = tmp_path / "cache", tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACING_BUILDER, str(image_folder), str(cache), str(barrier)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert len(list(barrier.iterdir())) == 2  # both built a whole cache before either published
    # one published, the other found it there and kept it
    assert sum("Another process finished the same cache first" in err for _, err in outputs) == 1, outputs
    lines = {out.strip() for out, _ in outputs}
    assert len(lines) == 1
    # no temporary left
    assert [p.name for p in cache.iterdir()] == [os.path.basename(lines.pop().split()[0])]
    assert prepare(image_folder, cache).images.shape == (40, 16, 16, 1)


def test_a_cache_dir_that_cannot_be_written_is_named(image_folder, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(CatdogError, match=r"data\.cache_dir=.*a-file.*: cannot write the cache there"):
        prepare(image_folder, blocker / "cache")


def test_decoding_processes_start_after_opencv_used_its_own_threads():
    """A process that already ran OpenCV's thread pool (any earlier resize) forks the decoding workers; before
    _fork_pool, a worker inherited the pool's held locks and hung in cv2.setNumThreads (the suite hung twice)."""
    script = (
        "import cv2, numpy as np\n"
        "from catdog.data.dataset import _fork_pool\n"
        "image = np.random.default_rng(0).integers(0, 255, (2000, 2000, 3), dtype=np.uint8)\n"
        "for _ in range(5):\n"
        "    cv2.GaussianBlur(cv2.resize(image, (1000, 1000)), (31, 31), 5)\n"
        "for _ in range(10):\n"
        "    pool = _fork_pool(2)\n"
        "    assert pool.map(abs, [-1, -2]) == [1, 2]\n"
        "    pool.terminate()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
