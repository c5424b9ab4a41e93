"""End to end: `python train.py` as a user runs it, on tiny generated data."""

import csv
import json
import logging
import re
import shlex
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, run_train, tiny_overrides, train_in_process, write_class_folders, zip_tree
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from catdog.errors import CatdogError
from catdog.overrides import read_overrides


def scalar_tags(run_dir):
    events = sorted((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event file in {run_dir}"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    return acc


def test_tiny_run_writes_metrics_tensorboard_checkpoints_and_config(image_folder, tmp_path):
    run_train(*tiny_overrides(image_folder, tmp_path))
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"val/acc", "val/acc_best", "val/loss", "train/loss", "train/acc"} <= set(metrics)
    # one epoch: its accuracy is the best, and the share of the validation photos it got right
    correct = [r["correct"] for r in csv.DictReader((run / "predictions_val.csv").read_text().splitlines())]
    assert metrics["val/acc_best"] == metrics["val/acc"] == pytest.approx(correct.count("1") / len(correct))
    # plain \n line ends, so `grep ',val$' splits.csv` finds the validation photos
    (cache,) = (tmp_path / "cache").iterdir()
    for table in (run / "splits.csv", run / "predictions_val.csv", cache / "photos.csv"):
        assert b"\r" not in table.read_bytes(), table
    assert len(re.findall(r",val$", (run / "splits.csv").read_text(), re.M)) == len(correct)
    tags = scalar_tags(run).Tags()["scalars"]
    assert {"train/loss", "train/acc", "val/loss", "val/acc"} <= set(tags)
    assert (run / "checkpoints" / "last.ckpt").exists()
    saved = (run / ".hydra" / "config.yaml").read_text()
    assert "resolution: 16" in saved


@pytest.mark.slow
def test_network_learns_the_generated_classes(image_folder, tmp_path):
    metrics = train_in_process(
        *tiny_overrides(image_folder, tmp_path), "trainer.max_epochs=6", "model.optimizer.lr=0.01"
    )
    assert metrics["val/acc_best"] >= 0.9


def test_second_run_loads_the_cache_instead_of_decoding(image_folder, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    overrides = tiny_overrides(image_folder, tmp_path)
    train_in_process(*overrides, "trainer.fast_dev_run=true")
    assert "Prepared" in caplog.text
    assert caplog.text.count("images (Cat: ") == 1  # the data block once, decoded or loaded
    caplog.clear()
    train_in_process(*overrides, "trainer.fast_dev_run=true")
    assert "Loaded cached arrays" in caplog.text and "Prepared" not in caplog.text
    assert caplog.text.count("images (Cat: ") == 1
    assert len(list((tmp_path / "cache").iterdir())) == 1


# A CatdogError is what every entry point prints as one `error:` line; the test after this one shows that once, as a
# user sees it, and the other messages are checked in this process (a new one spends seconds importing torch).
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_gpu_requested_without_gpu_is_one_clear_message(image_folder, tmp_path):
    with pytest.raises(CatdogError, match=r"trainer\.accelerator=gpu, but PyTorch sees no CUDA GPU"):
        train_in_process(*tiny_overrides(image_folder, tmp_path), "trainer.accelerator=gpu")


def test_too_small_resolution_is_one_clear_message(image_folder, tmp_path):
    proc = run_train(*tiny_overrides(image_folder, tmp_path), "data.resolution=6", check=False)
    assert proc.returncode == 1
    assert "data.resolution=6 is too small" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_missing_source_is_one_clear_message(tmp_path):
    with pytest.raises(CatdogError, match=re.escape(f"data.source={tmp_path / 'nowhere'}")):
        train_in_process(*tiny_overrides(tmp_path / "nowhere", tmp_path))
    assert not (tmp_path / "cache").exists()


def test_home_in_data_source_and_ckpt_path_as_the_readme_writes_them(
    image_folder, tmp_path, monkeypatch, caplog
):
    zip_tree(image_folder, tmp_path / "my_photos.zip")
    monkeypatch.setenv("HOME", str(tmp_path))
    caplog.set_level(logging.INFO)
    overrides = [o for o in tiny_overrides(image_folder, tmp_path) if not o.startswith("data.source=")]
    # the command line as train.py reads it (a bare ~ Hydra would refuse), then the run in this process
    train_in_process(*read_overrides(["data.source=~/my_photos.zip", *overrides]))
    resumed = ["data.source='~/my_photos.zip'", *overrides, "ckpt_path=~/run/checkpoints/last.ckpt"]
    train_in_process(*read_overrides([*resumed, "trainer.max_epochs=2"]))
    assert "Restored all states" in caplog.text


def test_an_override_hydra_cannot_parse_is_one_line_with_the_quoting_fix(tmp_path):
    proc = run_train("data.source=/my photos (2024).zip", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "Exception" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: cannot read the override 'data.source=/my photos (2024).zip'")
    assert "\"data.source='...'\"" in line


def test_a_network_key_of_catdog_0_2_names_its_new_place(tmp_path):
    proc = run_train("model.net.kernel=3,5", "-m", f"hydra.sweep.dir={tmp_path}", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: model.net.kernel is now model.kernel (the network's keys are back at model.* since catdog 0.3): "
        "write model.kernel=... instead."
    ]


def test_make_train_prints_the_command_that_trains_on_the_same_photos(image_folder, tmp_path, caplog):
    # a path that both the shell and Hydra would split or refuse unquoted: spaces, ( ) , and a quote
    folder = tmp_path / "Bob's photos"
    folder.mkdir()
    archive = zip_tree(image_folder, folder / "pets (2024), v2.zip")
    overrides = [o for o in tiny_overrides(image_folder, tmp_path) if not o.startswith("data.source=")]
    # the test's interpreter, and no reinstall (-o: the install stamp counts as up to date)
    make = ["make", "-s", "-o", ".venv/.installed", f"BIN={sys.executable.rsplit('/', 1)[0]}", "train"]
    proc = subprocess.run(
        [*make, f"DATA={archive}", f"ARGS={' '.join(overrides)}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    quoted = "data.source='" + str(archive).replace("'", "\\'") + "'"  # Hydra's quotes, a ' in them as \'
    ran = shlex.split(re.search(r"^Trained with: (.*)$", proc.stdout, re.M).group(1))
    assert ran[1:] == ["train.py", quoted, *overrides]
    following = shlex.split(
        re.search(r"^Next, on the same photos: (.*) \[overrides\]$", proc.stdout, re.M).group(1)
    )
    caplog.set_level(logging.INFO)
    train_in_process(*read_overrides([*following[2:], *overrides, "trainer.fast_dev_run=true"]))
    assert "Loaded cached arrays" in caplog.text  # the same photos: the same cache


def test_tutorial_experiment_is_the_tutorial():
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=tutorial"])
    assert (cfg.data.resolution, cfg.data.channels, cfg.data.batch_size, cfg.data.val_fraction) == (
        50,
        1,
        100,
        0.1,
    )
    m = cfg.model
    assert (list(m.channels), m.kernel, m.pool, list(m.hidden), m.loss) == (
        [32, 64, 128],
        5,
        2,
        [512],
        "mse",
    )
    assert m.optimizer._target_ == "torch.optim.Adam" and m.optimizer.lr == 0.001
    assert not m.batchnorm and m.dropout == 0


@pytest.mark.slow
def test_tutorial_on_real_photos_learns(shared_zip, tmp_path):
    """One epoch of the tutorial on the 24,998 real photos: the tutorial itself gets ~60-70%."""
    run_train(
        "experiment=tutorial",
        f"data.source={shared_zip}",
        f"data.cache_dir={tmp_path}/cache",
        f"hydra.run.dir={tmp_path}/run",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val/acc"] >= 0.58
    report = json.loads(next((tmp_path / "cache").glob("*/report.json")).read_text())
    assert report["n_images"] == 24998 and report["per_class"] == {"Cat": 12499, "Dog": 12499}


def test_debug_limit_runs_on_small_data_and_says_what_the_numbers_rest_on(tmp_path, caplog):
    """40 photos, 8 per batch: 10% of the val batches would be less than one; `debug=limit` counts batches."""
    source = write_class_folders(tmp_path / "pets", per_class=20)
    caplog.set_level(logging.INFO)
    train_in_process(
        *tiny_overrides(source, tmp_path),
        "debug=limit",
        "trainer.limit_val_batches=1",
        "test=true",
        "data.test_fraction=0.25",
    )
    (listing,) = (tmp_path / "cache").glob("*/splits/seed0-val0.25-test0.25/splits.csv")
    n = {s: listing.read_text().count(f",{s}\n") for s in ("val", "test")}
    assert (tmp_path / "run" / "splits.csv").read_text() == listing.read_text()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert n["val"] > 8 and metrics["val/n_images"] == 8 and metrics["test/n_images"] == n["test"] <= 32
    assert f"val/acc rests on 8 of the {n['val']} val images" in caplog.text
    assert "test/acc rests on" not in caplog.text


def test_a_k_fold_sweep_validates_on_each_fold_once(tmp_path):
    source = write_class_folders(tmp_path / "pets", per_class=15)
    overrides = [o for o in tiny_overrides(source, tmp_path) if not o.startswith("hydra.run.dir")]
    run_train(
        "-m",
        *overrides,
        f"hydra.sweep.dir={tmp_path}/sweep",
        "data.folds=3",
        "data.fold=0,1,2",
        "data.test_fraction=0.2",
    )
    listings = sorted((tmp_path / "cache").glob("*/splits/seed0-test0.2-fold*of3/splits.csv"))
    assert [p.parent.name[-8:] for p in listings] == ["fold0of3", "fold1of3", "fold2of3"]
    # each job's run dir lists the split it trained on
    assert [(tmp_path / "sweep" / str(j) / "splits.csv").read_text() for j in range(3)] == [
        p.read_text() for p in listings
    ]
    splits = [dict(r.split(",")[::2] for r in p.read_text().splitlines()[1:]) for p in listings]
    assert splits[0].keys() == splits[1].keys() == splits[2].keys() and len(splits[0]) == 30
    test = {p for p, s in splits[0].items() if s == "test"}
    assert all({p for p, s in split.items() if s == "test"} == test for split in splits) and test
    vals = [{p for p, s in split.items() if s == "val"} for split in splits]
    assert sorted(p for v in vals for p in v) == sorted(set(splits[0]) - test)  # each photo validates once
    assert all((tmp_path / "sweep" / str(job) / "metrics.json").exists() for job in range(3))
