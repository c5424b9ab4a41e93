"""The scale benchmark at a smoke size: real generated photos, real prepare runs, real training epochs."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import record, scale


def test_synthetic_photos_are_unique_two_class_and_kept(tmp_path):
    a, b = scale.synthetic_photo(0), scale.synthetic_photo(1)
    assert a.shape == (128, 128, 3) and not np.array_equal(a, b)
    assert np.array_equal(a, scale.synthetic_photo(0))
    folder = scale.photo_folder(tmp_path, 6, workers=1)
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg")) == [
        "circles/0000000.jpg",
        "circles/0000002.jpg",
        "circles/0000004.jpg",
        "squares/0000001.jpg",
        "squares/0000003.jpg",
        "squares/0000005.jpg",
    ]
    kept = (tmp_path / "photos" / "circles" / "0000000.jpg").stat()
    scale.photo_folder(tmp_path, 8, workers=1)  # a larger size reuses the photos made, as hard links
    assert (tmp_path / "photos" / "circles" / "0000000.jpg").stat().st_mtime_ns == kept.st_mtime_ns
    assert (tmp_path / "n8" / "circles" / "0000000.jpg").stat().st_ino == kept.st_ino


@pytest.mark.slow
def test_the_scale_benchmark_measures_each_size_and_states_each_goal(tmp_path):
    tiny = (
        "model.channels=[4,8]",
        "model.channels_last=false",
        "model.augment.translate=2",
        "threads=1",
        "trainer.precision=32-true",
        f"paths.speed_settings={tmp_path / 'speed_settings.json'}",
    )
    rows = scale.measure(sizes=(40, 80), exhaustive_at=40, resolution=16, root=tmp_path, train_overrides=tiny)
    measures = [(r["measure"], r["photos"]) for r in rows]
    assert measures == [
        ("prepare", 40),
        ("prepare peak RSS", 40),
        ("prepare", 80),
        ("prepare peak RSS", 80),
        ("prepare time per photo", "80 / 40"),
        ("prepare peak RSS", "80 / 40"),
        ("exhaustive search", 40),
        ("exhaustive search (extrapolated)", 80),
        ("near-duplicate search", 80),
        ("epoch images/s (memory-mapped)", 40),
        ("epoch images/s (memory-mapped)", 80),
        ("epoch images/s", "80 / 40"),
    ]
    assert [r["goal"] for r in rows if "goal" in r] == [
        "<= 1.3x",
        "<= 1.5x",
        "< 0.05 of the exhaustive, identical pairs",
        ">= 0.8x",
    ]
    assert "pairs at 40 identical" in rows[8]["value"] and all(
        isinstance(r["met"], bool) for r in rows if "met" in r
    )
    assert float(rows[1]["value"].split()[0].replace(",", "")) > 10  # a real peak RSS, in MB
    lines = scale.markdown(rows)
    assert lines[0] == "| measure | photos | value | goal | met |" and len(lines) == 2 + len(rows)
    assert lines[2].startswith("| prepare | 40 | ") and lines[-1].endswith(("| met |", "| MISSED |"))
    assert "scale" in record.BENCHMARKS and "scale" in record.ON_REQUEST


def test_peak_rss_is_the_commands_own_not_the_benchmarks():
    """A process forked from a big one inherits its high-water mark: the launcher keeps the benchmark's out."""
    import sys

    from benchmarks.scale import peak_rss_run

    ballast = b"x" * 400_000_000  # the benchmark's own memory, resident
    small, small_mb = peak_rss_run([sys.executable, "-c", "pass"])
    big, big_mb = peak_rss_run([sys.executable, "-c", "b = b'x' * 200_000_000"])
    assert small.returncode == 0 and big.returncode == 0 and len(ballast) == 400_000_000
    assert small_mb < 100  # a bare interpreter: ~10 MB, not the 400 MB above
    assert 200 <= big_mb < 300


def test_scale_parts_prepare_measures_prepare_alone(tmp_path):
    rows = scale.measure(sizes=(40, 80), resolution=16, root=tmp_path, prepare_only=True)
    assert [r["measure"] for r in rows][-2:] == ["prepare time per photo", "prepare peak RSS"] and len(
        rows
    ) == 6
