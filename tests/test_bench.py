"""`python -m benchmarks`: the benchmark registry, the record, and the preprocessing comparison on tiny data."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import ROOT, git, git_repo, read_csv, write_class_folders, write_kaggle, zip_tree
from warm_python import warm_run

from benchmarks import accuracy, choice, preprocessing, record, training
from benchmarks.results import COLUMNS


@pytest.fixture(autouse=True)
def warm_commands(monkeypatch):
    """The benchmarks' `python train.py` and `python -m catdog.X` commands forked from the tests' warm interpreter
    (warm_python.py): ~3.5 s less each, in tests of what the benchmarks do, not of how long it takes."""
    monkeypatch.setattr(subprocess, "run", warm_run(subprocess.run))


@pytest.fixture(autouse=True)
def code_checkout(tmp_path, monkeypatch):
    """Sections record the commit of a real, clean checkout (this one may hold uncommitted work)."""
    repo = git_repo(tmp_path / "code")
    monkeypatch.setattr(record, "CODE_ROOT", repo)
    return repo


def test_kaggle_and_folder_archives_are_arranged_for_the_baseline(tmp_path):
    kaggle = zip_tree(write_kaggle(tmp_path / "k" / "train", per_class=3), tmp_path / "k.zip")
    folders = zip_tree(write_class_folders(tmp_path / "f" / "PetImages", per_class=2), tmp_path / "f.zip")
    for archive, per_class in ((kaggle, 3), (folders, 2)):
        out = preprocessing.extract_cat_dog(archive, tmp_path / archive.stem / "images")
        assert sorted(p.name for p in out.iterdir()) == ["Cat", "Dog"]
        assert [len(list((out / c).iterdir())) for c in ("Cat", "Dog")] == [per_class, per_class]
        assert not (tmp_path / archive.stem / "images-raw").exists()
    assert sorted(p.name for p in (tmp_path / "k" / "images" / "Dog").iterdir())[0] == "train_dog.0.jpg"


@pytest.fixture
def record_to(tmp_path, monkeypatch) -> Path:
    """The record's rows and log under tmp_path: (tmp_path/results, tmp_path/log.md)."""
    monkeypatch.setattr(record, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(record, "LOG", tmp_path / "log.md")
    return tmp_path


def toy(seed_values=(0.95, 0.97)) -> list[str]:
    """A benchmark that measures one metric with a goal and one without."""
    record.result(
        "toy accuracy (%)",
        record.mean_std([100 * v for v in seed_values], 2),
        goal=">= 96",
        met=True,
        seeds="0-1",
        note="a toy",
    )
    record.result("toy seconds", "1.5")
    return ["| a | 1 |"]


def test_named_benchmarks_run_and_their_rows_are_recorded(record_to, monkeypatch, capsys):
    monkeypatch.setitem(record.BENCHMARKS, "toy", toy)
    record.BENCHMARKS["toy"].__doc__ = "A toy."
    record.main(["toy"])
    record.main(["toy", "--no-record"])
    rows = read_csv(record_to / "results" / "toy.csv")
    assert len(rows) == 2 and not (record_to / "log.md").exists()
    first, second = rows
    # every column filled where it applies: the machine's, the commit's and the benchmark's own
    assert list(first) == list(COLUMNS)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", first["date"]) and re.fullmatch(
        r"[0-9a-f]{7}", first["commit"]
    )
    assert (
        first["cpu"] == record.cpu_model()
        and first["cpu"].endswith("CPUs")
        and first["gpu"] == record.gpu_name()
    )
    assert (first["seeds"], first["metric"], first["value"]) == ("0-1", "toy accuracy (%)", "96.00 +- 1.41")
    assert (first["goal"], first["met"], first["note"]) == (">= 96", "met", "a toy")
    assert (second["metric"], second["value"], second["goal"], second["met"]) == (
        "toy seconds",
        "1.5",
        "",
        "measured",
    )
    with pytest.raises(SystemExit):
        record.main(["nonesuch"])
    assert "unknown benchmark nonesuch" in capsys.readouterr().err


def test_rows_are_appended_and_the_narrative_is_optional(record_to, monkeypatch):
    monkeypatch.setitem(record.BENCHMARKS, "toy", toy)
    record.BENCHMARKS["toy"].__doc__ = "A toy."
    record.main(["toy", "--note", "quiet machine"])
    record.main(["toy", "--log", "--train", "model.whiten=true", "--train", "trainer=gpu"])
    rows = read_csv(record_to / "results" / "toy.csv")
    assert [r["note"] for r in rows] == ["a toy; quiet machine", "quiet machine", "a toy", ""]
    # another recipe is another goal row; trainer=gpu only picks the machine, which the gpu column names
    assert [r["metric"] for r in rows[2:]] == [
        "toy accuracy (%) [model.whiten=true]",
        "toy seconds [model.whiten=true]",
    ]
    log = (record_to / "log.md").read_text()
    assert log.count(": toy\n") == 1 and "A toy." in log and "| a | 1 |" in log and "torch " in log
    assert "train.py overrides added: `model.whiten=true trainer=gpu`" in log


def test_rows_record_the_commit_and_a_dirty_tree_is_refused(record_to, monkeypatch, capsys, code_checkout):
    monkeypatch.setitem(record.BENCHMARKS, "toy", toy)
    commit = git(code_checkout, "rev-parse", "HEAD").strip()
    record.main(["toy", "--log"])
    rows = record_to / "results" / "toy.csv"
    assert {r["commit"] for r in read_csv(rows)} == {commit[:7]}
    assert f"\nCommit: {commit}\n" in (record_to / "log.md").read_text()

    # the record's own files are no code: new rows, a regenerated status or README leave the tree clean
    for name in ("results/toy.csv", "RESULTS.md", "README.md", "docs/benchmark-log.md"):
        (code_checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (code_checkout / name).write_text("a record is not code\n")
    record.main(["toy"])
    assert {r["commit"] for r in read_csv(rows)} == {commit[:7]}

    (code_checkout / "a.py").write_text("x = 2\n")
    with pytest.raises(SystemExit):
        record.main(["toy"])
    assert "uncommitted changes" in capsys.readouterr().err and len(read_csv(rows)) == 4
    record.main(["toy", "--allow-dirty", "--log"])
    assert read_csv(rows)[-1]["commit"] == f"{commit[:7]} DIRTY"
    last = (record_to / "log.md").read_text().split("\n## ")[-1]
    assert last.splitlines()[0].endswith(": toy (DIRTY)") and f"Commit: {commit} DIRTY" in last


def test_outside_a_checkout_the_commit_is_unknown(record_to, monkeypatch):
    monkeypatch.setattr(record, "CODE_ROOT", record_to / "not-a-checkout")
    monkeypatch.setitem(record.BENCHMARKS, "toy", toy)
    record.main(["toy", "--log"])
    assert {r["commit"] for r in read_csv(record_to / "results" / "toy.csv")} == {"unknown"}
    assert "Commit: unknown (not a git checkout)" in (record_to / "log.md").read_text()


def test_preprocessing_comparison_on_the_same_images(tmp_path):
    if not record.BASELINE.exists():
        pytest.skip("../shared/bench is not present (only on the project's own machines)")
    archive = zip_tree(write_kaggle(tmp_path / "k" / "train", per_class=20), tmp_path / "k.zip")
    result = preprocessing.compare_preprocessing(archive, tmp_path, resolution=16, repeats=1)
    assert result["baseline"]["images"] == result["catdog"]["images"] == 40
    # what catdog's timing built is a whole cache of those photos (loaded back, not decoded again)
    folder, cache = tmp_path / "images", tmp_path / "cache"
    (built,) = cache.iterdir()
    arrays = preprocessing.prepare_gray(folder, 16, cache)
    assert arrays.directory == built and arrays.images.shape == (40, 16, 16, 1)


@pytest.fixture(scope="module")
def fast_path_run(tmp_path_factory) -> tuple[Path, float]:
    """One real two-epoch run on the overhead benchmark's fast path, launched as the benchmarks launch train.py
    (shared: each test reads another of its outputs)."""
    from helpers import tiny_overrides

    tmp = tmp_path_factory.mktemp("bench")
    source = write_class_folders(tmp / "PetImages")
    overrides = [o for o in tiny_overrides(source, tmp) if not o.startswith("hydra.run.dir")]
    return training.run_training(tmp, "fast-path", *overrides, *training.FAST_PATH, "trainer.max_epochs=2")


def test_time_to_accuracy_reads_the_curve_of_a_real_run(fast_path_run, tmp_path):
    run_dir, launched = fast_path_run
    curve = accuracy.accuracy_curve(run_dir, launched)
    assert [epoch for epoch, _, _ in curve] == [1, 2]
    assert 0 < curve[0][1] < curve[1][1]  # seconds since launch, increasing
    assert curve[-1][2] == pytest.approx(training.read_metrics(run_dir)["val/acc"])
    accuracy.plot_curves({"fast": curve}, tmp_path / "curve.png", goal=0.9)
    assert (tmp_path / "curve.png").stat().st_size > 1000
    corrupted = accuracy.robustness(run_dir)
    assert (
        corrupted["split"] == "val"
        and len([k for k in corrupted if k.startswith("robustness/")]) == 1 + 7 * 3
    )
    assert corrupted["robustness/clean"] == pytest.approx(corrupted["val/acc"])
    assert accuracy.robustness(run_dir, split="val")["robustness/clean"] == corrupted["robustness/clean"]
    assert (run_dir / "robustness-val" / "metrics.json").exists()


def test_robustness_lines_give_the_mean_and_the_worst_corruption():
    scores = {f"robustness/{k}_{s}": 0.9 for k in ("blur", "jpeg", "zoom") for s in (1, 2, 3)}
    scores |= {"robustness/clean": 0.95, "robustness/zoom_3": 0.6, "val/acc": 0.95}
    (row,) = accuracy.robustness_lines([{"seed": 2, "robustness": scores}])[4:]
    assert row == "| 2 | 0.9500 | 0.8667 | 0.6000 (zoom_3) |"
    *_, verdict = accuracy.robustness_lines([{"seed": 2, "robustness": scores}], goal=0.88)
    assert verdict == "Mean corrupted accuracy 0.8667. Goal >= 0.88: MISSED."


def test_bench_keep_keeps_each_run_folder_but_its_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_KEEP", str(tmp_path / "kept"))
    with accuracy.run_folder("best-10") as work:
        (work / "cache").mkdir()
        (work / "cache" / "images.npy").write_bytes(b"x")
        (work / "best-10.ckpt").write_bytes(b"y")
    assert work == tmp_path / "kept" / "best-10" and sorted(p.name for p in work.iterdir()) == [
        "best-10.ckpt"
    ]
    with pytest.raises(FileExistsError), accuracy.run_folder("best-10"):  # a warm cache would not be cold
        pass
    monkeypatch.delenv("BENCH_KEEP")
    with accuracy.run_folder("fast-0") as work:
        assert work.is_dir() and not any(work.iterdir())
    assert not work.exists()


def test_the_choice_on_val_gives_each_candidate_and_its_means_and_no_test_number():
    rows = [
        {"name": n, "seed": s, "val": v, "clean": v - 0.01, "corrupted": c, "epoch_s": 25.0}
        for n, s, v, c in [
            ("fast", 30, 0.95, 0.79),
            ("fast", 31, 0.94, 0.81),
            ("fast_robust", 30, 0.95, 0.88),
        ]
    ]
    lines = choice.choice_lines(rows)
    assert lines[2] == "| fast | 30 | 0.9500 | 0.9400 | 0.7900 | 25.0 |"
    assert "- fast: best val acc 0.9450, corrupted val 0.8000, 25.0 s an epoch" in lines
    assert "- fast_robust: best val acc 0.9500, corrupted val 0.8800, 25.0 s an epoch" in lines
    assert not any("test" in line for line in lines)


def test_every_choice_candidate_composes_to_the_augmentation_its_name_says():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        configs = {name: compose("train", overrides) for name, overrides in choice.FAST_CANDIDATES.items()}
    models = {name: cfg.model for name, cfg in configs.items()}
    augment = {name: OmegaConf.to_container(model.augment) for name, model in models.items()}
    crop = {"hflip": True, "translate": 0, "resized_crop": {"scale": [0.25, 1]}, "trivial_augment": 1}
    assert augment["crops 0.25-1 + trivial_augment=1"] == crop
    assert augment["crops 0.25-1 + trivial_augment=0.5"] == {**crop, "trivial_augment": 0.5}
    assert augment["crops 0.5-1 + trivial_augment=1"] == {**crop, "resized_crop": {"scale": [0.5, 1]}}
    assert augment["fast_robust (fast + trivial_augment=1)"] == {**augment["fast"], "trivial_augment": 1}
    for start in (32, 48):
        name = f"fast_robust + progressive_resize from {start} px over 6 epochs"
        assert augment[name] == augment["fast_robust (fast + trivial_augment=1)"]
        assert OmegaConf.to_container(models[name].progressive_resize) == {"start": start, "until_epoch": 6}
    assert augment["fast + augmix"] == {**augment["fast"], "augmix": True}
    assert augment["fast_robust + mixup 0.2"] == {
        **augment["fast_robust (fast + trivial_augment=1)"],
        "mixup": 0.2,
    }
    # progressive resizing where the name says so, or the preset's own (since the sixteenth round)
    grown = {name for name in models if "progressive" in name or " the first " in name or "plain" in name}
    assert all(model.progressive_resize is None for name, model in models.items() if name not in grown)
    for start, epochs in ((32, 16), (48, 14)):
        name = f"fast_robust + blur 0.02, {epochs} epochs, the first 8 from {start} px"
        assert OmegaConf.to_container(models[name].progressive_resize) == {"start": start, "until_epoch": 8}
        assert configs[name].trainer.max_epochs == epochs
    for strength in (0.04, 0.02, 0.015, 0.01):
        assert augment[f"fast_robust + blur {strength}"] == {
            **augment["fast_robust + pool_after_conv"],
            "blur": strength,
        }
    robust = augment["fast_robust + pool_after_conv"]
    assert augment["fast_robust + blur 0.02, 14 epochs"] == {**robust, "blur": 0.02}
    assert augment["fast_robust at trivial_augment=0.5 + blur 0.02"] == {
        **robust,
        "trivial_augment": 0.5,
        "blur": 0.02,
    }
    assert augment["fast_robust + EMA"] == robust and augment["fast_robust + blur 0.02 + EMA"] == {
        **robust,
        "blur": 0.02,
    }
    for name in (
        "fast_robust + blur 0.02, 16 epochs, the first 8 from 32 px",
        "fast_robust + blur 0.02, 14 epochs, the first 8 from 48 px",
        "fast_robust + blur 0.02, a third conv in the last stage",
        "fast_robust + blur 0.02, dropout 0",
    ):
        assert augment[name] == {**robust, "blur": 0.02}
    third_conv = models["fast_robust + blur 0.02, a third conv in the last stage"]
    assert list(third_conv.convs_per_stage) == [2, 2, 2, 3]
    assert models["fast_robust + blur 0.02, dropout 0"].dropout == 0
    assert (
        models["fast_robust + avg pooling"].pool_type == "avg"
        and augment["fast_robust + avg pooling"] == robust
    )
    # rounds 1-15 measured fast_robust at 12 epochs without blur; the sixteenth's first candidate is the preset now
    kept = "fast_robust + blur 0.02, 16 epochs, the first 8 from 32 px"
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        preset = compose("train", ["experiment=fast_robust"])
    assert configs[kept].model == preset.model and configs[kept].trainer == preset.trainer
    for n in (2, 4):
        tail = configs[f"fast_robust, the last {n} epochs plain"]
        assert tail.trainer == preset.trainer and OmegaConf.to_container(tail.model.augment) == {
            **OmegaConf.to_container(preset.model.augment),
            "plain_last_epochs": n,
        }
    for epochs, until in ((18, 12), (17, 10)):
        longer = configs[f"fast_robust, {epochs} epochs, the first {until} from 32 px"]
        assert longer.model.augment == preset.model.augment and longer.trainer.max_epochs == epochs
        assert OmegaConf.to_container(longer.model.progressive_resize) == {"start": 32, "until_epoch": until}
    earlier = [name for name in configs if name.startswith("fast_robust") and "epochs" not in name]
    assert earlier and all(configs[name].trainer.max_epochs == 12 for name in earlier)
    assert all("blur" not in augment[name] for name in earlier if "blur" not in name)
    with_ema = sorted(name for name, cfg in configs.items() if "ema" in cfg.callbacks)
    assert with_ema == ["fast_robust + EMA", "fast_robust + blur 0.02 + EMA"]
    assert configs["fast_robust + EMA"].callbacks.ema.decay == 0.999
    epochs = {name: cfg.trainer.max_epochs for name, cfg in configs.items()}
    assert epochs["fast_robust + blur 0.02, 14 epochs"] == 14 and epochs["fast_robust + blur 0.02"] == 12
    one_conv = [name for name in models if "one conv in the first stage" in name]
    assert len(one_conv) == 3 and all(list(models[n].convs_per_stage) == [1, 2, 2, 2] for n in one_conv)


def test_bench_candidates_picks_a_round_by_name_and_names_a_wrong_one():
    round_two = "crops 0.5-1 + trivial_augment=1;fast_robust (fast + trivial_augment=1)"
    assert list(choice.selected(choice.FAST_CANDIDATES, round_two)) == round_two.split(";")
    assert choice.selected(choice.FAST_CANDIDATES, None) == choice.FAST_CANDIDATES
    with pytest.raises(SystemExit, match=r"error: BENCH_CANDIDATES names 'fats', no candidate: use fast; "):
        choice.selected(choice.FAST_CANDIDATES, "fast;fats")


def test_benchmarks_on_request_run_only_when_named(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(record, "BENCHMARKS", {})
    monkeypatch.setattr(record, "ON_REQUEST", set())

    @record.benchmark
    def quick():
        ran.append("quick")
        return []

    @record.benchmark(by_default=False)
    def slow():
        ran.append("slow")
        return []

    record.main(["--no-record"])
    assert ran == ["quick"] and record.TRAIN_OVERRIDES == []
    record.main(["slow", "--no-record"])
    assert ran == ["quick", "slow"]


def test_train_overrides_reach_every_training_run(tmp_path, monkeypatch, request, record_to):
    request.addfinalizer(record.TRAIN_OVERRIDES.clear)  # main() fills the list the benchmark modules share
    calls = []
    run = training.subprocess.run

    def fake_train(cmd, **kw):  # git (the commit of the record) runs for real
        return run(cmd, **kw) if cmd[0] == "git" else calls.append(cmd) or SimpleNamespace(returncode=0)

    monkeypatch.setattr(training.subprocess, "run", fake_train)
    monkeypatch.setattr(
        record, "BENCHMARKS", {"trains": lambda: [str(training.run_training(tmp_path, "r", "a=1")[0])]}
    )
    record.main(["trains", "--log", "--train", "trainer=gpu", "--train", "data.batch_size=256"])
    assert calls[0][-3:] == ["a=1", "trainer=gpu", "data.batch_size=256"]  # last, so they win
    assert "train.py overrides added: `trainer=gpu data.batch_size=256`" in (record_to / "log.md").read_text()


def test_the_fast_path_overrides_of_the_overhead_benchmark_train(fast_path_run):
    run_dir, _ = fast_path_run
    assert training.read_metrics(run_dir)["perf/train_samples_per_s"] > 0
    assert "trainer.precision=auto: " in (run_dir / "train.log").read_text()


@pytest.mark.parametrize("name", list(training.PRECISION_CONTENDERS))
def test_the_precision_benchmark_settings_compose(name):
    from hydra import compose, initialize_config_dir

    from catdog.run.checks import validate

    overrides = ["experiment=fast", *training.PRECISION_CONTENDERS[name]]
    with initialize_config_dir(config_dir=str(record.ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    validate(cfg)
    assert (cfg.trainer.precision == "auto") == ("precision=auto" in name)
    assert cfg.model.channels_last == ("channels_last" in name)
    assert cfg.model.compile == ("compile" in name)


def test_seed_summary_gives_mean_std_and_the_verdict():
    # (epoch, seconds since launch, val acc): 20 s of start-up, then 30 s an epoch; 0.97 first at 110 s
    curve = [(1, 50.0, 0.90), (2, 80.0, 0.96), (3, 110.0, 0.971), (4, 140.0, 0.975)]
    runs = [
        {"seed": s, "test": t, "val": 0.95, "minutes": m, "curve": c}
        for s, t, m, c in ((0, 0.94, 3.5, curve), (1, 0.95, 3.9, curve[:2]))
    ]
    lines = accuracy.seed_summary(runs, goal=0.945, within=4 * 60)
    assert "| 0 | 0.9400 | 0.9500 | 3.5 | 30.0 | 1.8 |" in lines
    assert "| 1 | 0.9500 | 0.9500 | 3.9 | 30.0 | not reached |" in lines
    assert "Test accuracy 0.9450 +- 0.0071 (mean +- std over 2 seed(s)), 3.7 +- 0.3 min" in lines[-1]
    assert lines[-1].endswith("met.")
    assert accuracy.seed_summary(runs, goal=0.945, within=3.8 * 60)[-1].endswith("MISSED.")


def test_variants_and_gpu_runs_keep_their_own_plot(monkeypatch):
    """The preset's plot is what its CPU rows describe: `--train` variants and GPU runs do not overwrite it."""
    monkeypatch.setattr(accuracy, "accelerator", lambda: "no GPU")
    monkeypatch.setattr(accuracy, "TRAIN_OVERRIDES", [])
    assert accuracy.plot_path("fast").name == "time_to_accuracy_fast.png"
    monkeypatch.setattr(accuracy, "TRAIN_OVERRIDES", ["callbacks=[default,lookahead]", "model.whiten=true"])
    assert (
        accuracy.plot_path("fast").name
        == "time_to_accuracy_fast_callbacks-default-lookahead-model.whiten-true.png"
    )
    monkeypatch.setattr(accuracy, "TRAIN_OVERRIDES", ["trainer=gpu"])
    monkeypatch.setattr(accuracy, "accelerator", lambda: "GPU: NVIDIA H200")
    assert accuracy.plot_path("best").name == "time_to_accuracy_best_gpu.png"


def test_startup_rows_say_whether_each_goal_is_met():
    from benchmarks import startup

    assert startup.row("help", 1.2, 1.5) == "| help | 1.20 | <= 1.5 s | met |"
    assert startup.row("help", 1.7, 1.5) == "| help | 1.70 | <= 1.5 s | MISSED |"
    assert startup.best_wall_time([sys.executable, "-c", "pass"], runs=2) > 0


@pytest.mark.slow
def test_the_audit_benchmark_times_an_audit_against_a_fast_run(tmp_path):
    from benchmarks import audit

    archive = zip_tree(write_class_folders(tmp_path / "src" / "PetImages", per_class=8), tmp_path / "p.zip")
    tiny = [
        "data.resolution=16",
        "data.folds=2",
        "model.channels=[4,8]",
        "model.augment.translate=2",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "data.progress=false",
    ]
    lines = audit.audit_cost(archive, tmp_path / "work", tmp_path / "kept", tiny)
    text = "\n".join(lines)
    assert "| python -m catdog.audit" in text and "Goal: the audit within 6x one fast run: **" in text
    assert "of 16 photos" in text
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["audit.csv", "audit.html", "audit.png"]


@pytest.mark.slow
def test_the_exclusions_benchmark_scores_each_run_with_and_without_the_flagged_photos(tmp_path):
    import hashlib

    from benchmarks import audit

    folders = write_class_folders(tmp_path / "src" / "PetImages", per_class=10)
    flagged = sorted(folders.rglob("*.jpg"))[:3]
    exclusions = tmp_path / "flagged.txt"
    exclusions.write_text("".join(hashlib.sha256(p.read_bytes()).hexdigest() + "\n" for p in flagged))
    archive = zip_tree(folders, tmp_path / "p.zip")
    tiny = ["data.resolution=16", "model.channels=[4,8]", "trainer.max_epochs=1", "trainer.accelerator=cpu"]
    lines = audit.exclusion_runs(archive, exclusions, [3], [*tiny, "data.progress=false"])
    rows = [line for line in lines if line.startswith("| 3 |")]
    assert [r.split(" | ")[1] for r in rows] == ["without", "with"]
    for row in rows:
        acc_all, acc_clean = (float(v) for v in row.strip("| ").split(" | ")[2:])
        assert 0.0 <= acc_all <= 1.0 and 0.0 <= acc_clean <= 1.0
    assert sum(line.startswith("| mean +- std |") for line in lines) == 2


@pytest.fixture
def tiny_deploy(tmp_path, monkeypatch):
    """A tiny checkpoint as --ckpt, and budgets small enough for a test (the real ones take minutes)."""
    from helpers import train_checkpoint

    from benchmarks import deploy, serving

    ckpt = train_checkpoint(write_class_folders(tmp_path / "PetImages", per_class=12), tmp_path, channels=3)
    monkeypatch.setattr(record, "CHECKPOINTS", [str(ckpt)])
    monkeypatch.setattr(deploy, "CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(deploy, "SPEED_SECONDS", 0.05)
    monkeypatch.setattr(serving, "WARMUP", 4)
    monkeypatch.setattr(serving, "REQUESTS", 40)
    monkeypatch.setattr(serving, "LEVEL_SECONDS", 30.0)
    return ckpt


def test_deploy_benchmark_measures_the_three_ways_on_a_tiny_checkpoint(tiny_deploy):
    from benchmarks import deploy

    lines = deploy.deploy()
    rows = [line for line in lines if line.startswith(f"| {tiny_deploy.name} |")]
    assert [row.split(" | ")[1] for row in rows] == ["checkpoint (torch)", "ONNX float", "ONNX int8"]
    assert rows[1].split(" | ")[4] == "1.0000"  # the float export labels every test photo as the checkpoint
    assert any(line.startswith(f"- {tiny_deploy.name} (") and "int8 speed-up" in line for line in lines)


def test_serve_benchmark_drives_both_servers_on_loopback(tiny_deploy, tmp_path):
    import cv2
    from helpers import make_image

    from benchmarks import deploy, serving

    _, int8 = deploy.export_int8(tiny_deploy, tmp_path / "export")
    photos = [cv2.imencode(".jpg", make_image(i % 2, seed=i, size=(120, 90)))[1].tobytes() for i in range(6)]
    lines = serving.serve_lines({"ckpt": tiny_deploy, "int8": int8}, photos, tmp_path)
    rows = [line.split(" | ") for line in lines if line.startswith(("| ckpt |", "| int8 |"))]
    assert [(r[0], r[1]) for r in rows] == [
        (f"| {m}", str(c)) for m in ("ckpt", "int8") for c in serving.LEVELS
    ]
    assert all(r[2] == "40" and r[3] == "0" and float(r[4].replace(",", "")) > 0 for r in rows)
    assert all(float(r[7].rstrip(" |")) > 0 for r in rows)  # the server's memory after each level
    assert sum("server memory" in line and "MB after" in line for line in lines) == 2


def test_the_pruning_benchmark_runs_its_searches_and_compares_them(tmp_path):
    """The pruning benchmark on a tiny budget: two 3-trial searches of 2 epochs on generated photos."""
    from benchmarks import sweeps

    photos = write_class_folders(tmp_path / "PetImages", per_class=20)
    # the benchmark's own pruner overrides, as it passes them
    pruned = "successive_halving (rung 3, top quarter, the first sets the bar)"
    assert pruned in sweeps.PRUNERS
    lines = sweeps.compare_pruners(photos, 3, 2, (0,), ("none", pruned), ["data.batch_size=8"])
    rows = [line.split(" | ") for line in lines if line.startswith(("| none | 0", f"| {pruned} | 0"))]
    assert (rows[0][0], rows[0][2], rows[0][3]) == ("| none", "3 / 0", "6")
    # 2 epochs, warm-up to 0.5: the rung is at epoch 1; the first trial to reach it is pruned there (it sets the
    # bar: bootstrap_count=1), the next run on only if each is the best so far; a pruned trial counts the one epoch
    # it trained
    complete, pruned_count = map(int, rows[1][2].split(" / "))
    assert (rows[1][0], complete + pruned_count) == (f"| {pruned}", 3) and pruned_count >= 1
    assert int(rows[1][3]) == 2 * complete + pruned_count
    assert all(0 <= float(r[5]) <= 1 and 0 <= float(r[6].rstrip(" |")) <= 1 for r in rows)
    share = f"{(2 * complete + pruned_count) / 6:.0%}"
    assert f"- `{pruned}`: {share} of the unpruned search's epochs (goal <= 50%: " in "\n".join(lines)


def test_speed_settings_times_every_candidate_the_calibration_weighs():
    from benchmarks.speed_settings import settings_rows

    lines = settings_rows(batch_sizes=(4,), compiles=(False,))
    rows = [line.split(" | ") for line in lines[2:]]
    # bf16 and float32, each layout; the tests run one torch thread, so one thread count
    assert [(r[0].lstrip("| "), r[2], r[4]) for r in rows] == [
        ("bf16-mixed", "False", "1"),
        ("bf16-mixed", "True", "1"),
        ("32-true", "False", "1"),
        ("32-true", "True", "1"),
    ]
    assert all(float(r[5]) > 0 for r in rows) and rows[0][7] == "1.00x |"


def test_calibration_cost_times_a_first_run_and_a_cached_one():
    """A preset's calibration from a fresh cache, then read from it (here the tutorial's net at batch 4, on the
    tests' one thread: 2 layouts)."""
    from benchmarks.speed_settings import calibration_cost, calibration_rows

    assert "calibration_cost" in record.BENCHMARKS and "calibration_cost" in record.ON_REQUEST
    assert calibration_cost.__doc__
    header, _, row = calibration_rows(("tutorial",), "data.batch_size=4")
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert header.startswith("| preset | step | combinations | first run (s) | cached (ms) |")
    assert cells[:3] == ["tutorial", "50 px, batch 4, 32-true", "2"] and float(cells[3]) > 0
    assert cells[6].startswith("model.channels_last=")
    if float(cells[5]) <= 0.10:  # a quiet first measurement is cached: the second run only reads it
        assert float(cells[4]) < 1000 * float(cells[3])


def test_bench_seeds_come_from_the_environment_or_the_benchmarks_default(monkeypatch):
    monkeypatch.delenv("BENCH_SEEDS", raising=False)
    assert record.bench_seeds((0, 1)) == [0, 1]
    monkeypatch.setenv("BENCH_SEEDS", "10,11, 12")
    assert record.bench_seeds((0, 1)) == [10, 11, 12]
    monkeypatch.setenv("BENCH_SEEDS", "10;11")
    with pytest.raises(
        SystemExit, match=r"^error: BENCH_SEEDS='10;11' is not a list of integers: write it as"
    ):
        record.bench_seeds((0, 1))


def test_mean_std_gives_the_spread_over_seeds_and_none_for_one():
    # the exclusion and pruning benchmarks' tables; their tests run one seed, so the spread is checked here
    assert record.mean_std([0.9, 0.8]) == "0.8500 +- 0.0707"
    assert record.mean_std([0.9]) == "0.9000"


def test_each_arm_of_the_freed_memory_benchmark_sets_glibc_its_own_way_and_times_a_step():
    """The arms run in fresh interpreters (the thresholds are process-wide): off leaves glibc alone, on raises its
    thresholds (this machine runs glibc), and each times real training steps of the fast net."""
    from benchmarks.speed_settings import freed_memory_arm

    off, on = freed_memory_arm(False, timings=1), freed_memory_arm(True, timings=1)
    assert off["state"] == "off"
    assert on["state"].startswith("on (trim above 1024 MiB")
    assert off["seconds"] > 0 and on["seconds"] > 0  # a time was taken; how long is the benchmark's to say


def test_the_test_suite_benchmark_times_make_test_and_reads_its_summary():
    """`make test` itself (one spelling of its command: the Makefile's), here on one small file."""
    from benchmarks.startup import timed_suite

    # -n 0 after the Makefile's -n auto: one process, no workers to start for one small file
    wall, cpu, summary = timed_suite(cold=False, pytest_args="-n 0 tests/test_config_errors.py")
    assert re.fullmatch(r"\d+ passed.*in [\d.]+s.*", summary), summary
    assert wall > 0 and cpu > 0
    wall, cpu, summary = timed_suite(cold=False, pytest_args="-n 0 tests/no_such_file.py")
    assert summary.startswith("no summary (exit ")


@pytest.mark.slow
def test_the_finetune_benchmark_smoke_plan_trains_every_task_from_the_left_out_photos(tmp_path):
    from benchmarks import finetune

    source = write_class_folders(tmp_path / "photos", per_class=20)
    rows = finetune.run_finetune(source, tmp_path / "work", finetune.SMOKE)
    # 24 photos left out (12 per class) of pretraining, by content; the tasks are built from them
    assert len((tmp_path / "work" / "left_out.txt").read_text().split()) == 24
    assert sorted(p.name for p in (tmp_path / "work" / "rotation-8").iterdir()) == list(finetune.ROTATIONS)
    assert sum(1 for _ in (tmp_path / "work" / "same-16").rglob("*.jpg")) == 24
    names = [r["metric"] for r in rows]
    assert len(rows) == 12 and "init_from - scratch, same classes, 8 photos" in names
    assert all(set(r) == {"metric", "values", "goal", "met", "seeds"} and r["seeds"] == [0] for r in rows)
    gain = next(r for r in rows if r["metric"] == "init_from - scratch, same classes, 8 photos")
    tests = {r["metric"]: r["values"][0] for r in rows if r["metric"].startswith("test acc, same classes, 8")}
    assert gain["values"] == [
        tests["test acc, same classes, 8 photos, init_from (mean)"]
        - tests["test acc, same classes, 8 photos, scratch (mean)"]
    ]
    pretrained = tmp_path / "work" / "pretrain" / "checkpoints" / "last.ckpt"
    provenance = (tmp_path / "work" / "rotation-8-1-default-s0" / "provenance.json").read_text()
    assert (
        str(pretrained) in provenance and '"last_layer": "new"' in provenance
    )  # 4 rotations: a new last layer
    lines = finetune.result_lines(rows)
    assert lines[0] == "| metric | value | goal | met | seeds |" and len(lines) == 14


def test_a_presets_runs_are_recorded_apart_on_the_seeds_that_chose_it(monkeypatch):
    monkeypatch.setattr(record, "MEASURED", [])
    runs = [
        {"seed": s, "test": t, "minutes": m, "curve": [(1, 10.0, 0.9), (2, 30.0, 0.95)], "robustness": {}}
        for s, t, m in ((10, 0.95, 3.5), (11, 0.96, 4.5))
    ]
    for run in runs:
        run["robustness"] = {"robustness/clean": 0.95, "robustness/blur_1": 0.9, "robustness/jpeg_1": 0.8}
    accuracy.record_runs("fast", runs)
    first = {r["metric"]: r for r in record.MEASURED}
    fresh = first["test accuracy, fresh seeds (%)"]
    assert (fresh["value"], fresh["goal"], fresh["met"], fresh["seeds"]) == (
        "95.50 +- 0.71",
        ">= 94.5",
        "met",
        "10-11",
    )
    minutes = first["minutes, launch to test result"]
    assert (minutes["value"], minutes["met"]) == ("4.0 +- 0.7", "MISSED")  # 4.5 min is past 4 for one seed
    assert first["s per epoch"]["value"] == "20.0 +- 0.0" and first["s per epoch"]["met"] == "measured"
    corrupted = first["mean test accuracy under 21 corruptions (%)"]
    assert (corrupted["value"], corrupted["goal"], corrupted["met"]) == ("85.0 +- 0.0", ">= 88", "MISSED")
    record.MEASURED.clear()
    accuracy.record_runs("fast", [{**runs[0], "seed": 0}])
    assert record.MEASURED[0]["metric"] == "test accuracy, seeds scored while choosing (%)"
