"""`python -m benchmarks`: the benchmark registry, the record, and the preprocessing comparison on tiny data."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from helpers import git, git_repo, write_class_folders, write_kaggle, zip_tree

from benchmarks import suite as bench


@pytest.fixture(autouse=True)
def code_checkout(tmp_path, monkeypatch):
    """Sections record the commit of a real, clean checkout (this one may hold uncommitted work)."""
    repo = git_repo(tmp_path / "code")
    monkeypatch.setattr(bench, "CODE_ROOT", repo)
    return repo


def test_kaggle_and_folder_archives_are_arranged_for_the_baseline(tmp_path):
    kaggle = zip_tree(write_kaggle(tmp_path / "k" / "train", per_class=3), tmp_path / "k.zip")
    folders = zip_tree(write_class_folders(tmp_path / "f" / "PetImages", per_class=2), tmp_path / "f.zip")
    for archive, per_class in ((kaggle, 3), (folders, 2)):
        out = bench.extract_cat_dog(archive, tmp_path / archive.stem / "images")
        assert sorted(p.name for p in out.iterdir()) == ["Cat", "Dog"]
        assert [len(list((out / c).iterdir())) for c in ("Cat", "Dog")] == [per_class, per_class]
        assert not (tmp_path / archive.stem / "images-raw").exists()
    assert sorted(p.name for p in (tmp_path / "k" / "images" / "Dog").iterdir())[0] == "train_dog.0.jpg"


def test_named_benchmarks_run_and_are_recorded(tmp_path, monkeypatch, capsys):
    record = tmp_path / "BENCHMARKS.md"
    monkeypatch.setattr(bench, "RECORD", record)
    monkeypatch.setitem(bench.BENCHMARKS, "toy", lambda: ["| a | 1 |"])
    bench.BENCHMARKS["toy"].__doc__ = "A toy."
    bench.main(["toy"])
    bench.main(["toy", "--no-record"])
    text = record.read_text()
    assert text.startswith("# Benchmarks") and text.count(": toy\n") == 1
    assert "A toy." in text and "| a | 1 |" in text and "CPUs" in text and "torch " in text
    with pytest.raises(SystemExit):
        bench.main(["nonesuch"])
    assert "unknown benchmark nonesuch" in capsys.readouterr().err


def test_sections_record_the_commit_and_a_dirty_tree_is_refused(tmp_path, monkeypatch, capsys, code_checkout):
    record = tmp_path / "BENCHMARKS.md"
    monkeypatch.setattr(bench, "RECORD", record)
    monkeypatch.setitem(bench.BENCHMARKS, "toy", lambda: ["| a | 1 |"])
    commit = git(code_checkout, "rev-parse", "HEAD").strip()
    bench.main(["toy"])
    assert f"\nCommit: {commit}\n" in record.read_text() and "DIRTY" not in record.read_text()

    (code_checkout / "BENCHMARKS.md").write_text("# a record is not code\n")
    bench.main(["toy"])
    assert record.read_text().count(f"Commit: {commit}\n") == 2

    (code_checkout / "a.py").write_text("x = 2\n")
    with pytest.raises(SystemExit):
        bench.main(["toy"])
    assert "uncommitted changes" in capsys.readouterr().err and record.read_text().count(": toy") == 2
    bench.main(["toy", "--allow-dirty"])
    last = record.read_text().split("\n## ")[-1]
    assert last.splitlines()[0].endswith(": toy (DIRTY)") and f"Commit: {commit} DIRTY" in last


def test_outside_a_checkout_the_commit_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "CODE_ROOT", tmp_path / "not-a-checkout")
    monkeypatch.setattr(bench, "RECORD", tmp_path / "BENCHMARKS.md")
    monkeypatch.setitem(bench.BENCHMARKS, "toy", lambda: [])
    bench.main(["toy"])
    assert "Commit: unknown (not a git checkout)" in (tmp_path / "BENCHMARKS.md").read_text()


def test_preprocessing_comparison_on_the_same_images(tmp_path):
    if not bench.BASELINE.exists():
        pytest.skip("../shared/bench is not present (only on the project's own machines)")
    archive = zip_tree(write_kaggle(tmp_path / "k" / "train", per_class=20), tmp_path / "k.zip")
    result = bench.compare_preprocessing(archive, tmp_path, resolution=16, repeats=1)
    assert result["baseline"]["images"] == result["catdog"]["images"] == 40
    # what catdog's timing built is a whole cache of those photos (loaded back, not decoded again)
    folder, cache = tmp_path / "images", tmp_path / "cache"
    (built,) = cache.iterdir()
    arrays = bench.prepare_dataset(
        str(folder), resolution=16, channels=1, cache_dir=str(cache), progress=False
    )
    assert arrays.directory == built and arrays.images.shape == (40, 16, 16, 1)


def test_time_to_accuracy_reads_the_curve_of_a_real_run(image_folder, tmp_path, monkeypatch):
    from helpers import tiny_overrides

    overrides = [o for o in tiny_overrides(image_folder, tmp_path) if not o.startswith("hydra.run.dir")]
    run_dir, launched = bench.run_training(tmp_path, "run", *overrides, "trainer.max_epochs=2")
    curve = bench.accuracy_curve(run_dir, launched)
    assert [epoch for epoch, _, _ in curve] == [1, 2]
    assert 0 < curve[0][1] < curve[1][1]  # seconds since launch, increasing
    assert curve[-1][2] == pytest.approx(bench.read_metrics(run_dir)["val/acc"])
    bench.plot_curves({"fast": curve}, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 1000


def test_benchmarks_on_request_run_only_when_named(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(bench, "RECORD", tmp_path / "BENCHMARKS.md")
    monkeypatch.setattr(bench, "BENCHMARKS", {})
    monkeypatch.setattr(bench, "ON_REQUEST", set())

    @bench.benchmark
    def quick():
        ran.append("quick")
        return []

    @bench.benchmark(by_default=False)
    def slow():
        ran.append("slow")
        return []

    bench.main(["--no-record"])
    assert ran == ["quick"] and bench.TRAIN_OVERRIDES == []
    bench.main(["slow", "--no-record"])
    assert ran == ["quick", "slow"]


def test_train_overrides_reach_every_training_run(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "RECORD", tmp_path / "BENCHMARKS.md")
    run = bench.subprocess.run

    def fake_train(cmd, **kw):  # git (the commit of the record) runs for real
        return run(cmd, **kw) if cmd[0] == "git" else calls.append(cmd) or SimpleNamespace(returncode=0)

    monkeypatch.setattr(bench.subprocess, "run", fake_train)
    monkeypatch.setattr(
        bench, "BENCHMARKS", {"trains": lambda: [str(bench.run_training(tmp_path, "r", "a=1")[0])]}
    )
    bench.main(["trains", "--train", "trainer=gpu", "--train", "data.batch_size=256"])
    assert calls[0][-3:] == ["a=1", "trainer=gpu", "data.batch_size=256"]  # last, so they win
    assert (
        "train.py overrides added: `trainer=gpu data.batch_size=256`"
        in (tmp_path / "BENCHMARKS.md").read_text()
    )


def test_the_fast_path_overrides_of_the_overhead_benchmark_train(image_folder, tmp_path):
    from helpers import tiny_overrides

    overrides = [o for o in tiny_overrides(image_folder, tmp_path) if not o.startswith("hydra.run.dir")]
    run_dir, _ = bench.run_training(tmp_path, "fast-path", *overrides, *bench.FAST_PATH)
    assert bench.read_metrics(run_dir)["perf/train_samples_per_s"] > 0
    assert "trainer.precision=auto: " in (run_dir / "train.log").read_text()


@pytest.mark.parametrize("name", list(bench.PRECISION_CONTENDERS))
def test_the_precision_benchmark_settings_compose(name):
    from hydra import compose, initialize_config_dir

    from catdog.run.checks import validate

    overrides = ["experiment=fast", *bench.PRECISION_CONTENDERS[name]]
    with initialize_config_dir(config_dir=str(bench.ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    validate(cfg)
    assert (cfg.trainer.precision == "auto") == ("precision=auto" in name)
    assert cfg.model.channels_last == ("channels_last" in name)
    assert cfg.model.compile == ("compile" in name)
