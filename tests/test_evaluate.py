"""Evaluating a checkpoint on labelled images: metrics, confusion matrix, TensorBoard, and clear errors."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from helpers import ROOT, run_module, train_checkpoint, write_class_folders, zip_tree
from hydra import compose, initialize_config_dir
from scipy.stats import mannwhitneyu
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import catdog
from catdog.data import ImageDataModule
from catdog.data.settings import DataSettings
from catdog.errors import CatdogError
from catdog.evaluate import evaluate
from catdog.export import export
from catdog.inference import Predictor


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate")
    return train_checkpoint(write_class_folders(tmp / "PetImages", per_class=12), tmp)


def evaluate_in_process(ckpt, source, out, *overrides):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        given = [f"ckpt_path={ckpt}", f"data.cache_dir={out}/cache"] + (
            [f"data.source={source}"] if source else []
        )
        cfg = compose("evaluate", [*given, f"paths.output_dir={out}", "data.progress=false", *overrides])
    return evaluate(cfg)


def kaggle_zip(tmp_path, per_class=10):
    """Test photos in the other layout (flat cat.N.jpg names, in a zip), with one broken file."""
    folders = write_class_folders(tmp_path / "src", per_class=per_class, ext=".png")
    flat = tmp_path / "test1"
    flat.mkdir()
    for p in folders.rglob("*.png"):
        shutil.copy(p, flat / f"{p.parent.name.lower()}.{p.stem}.png")
    (flat / "dog.999.png").write_bytes(b"broken")
    return zip_tree(flat, tmp_path / "test1.zip")


def test_evaluate_cli_on_a_kaggle_zip(ckpt, tmp_path):
    """The data config says 50px grayscale; the checkpoint's 16px colour must win."""
    run = tmp_path / "run"
    proc = run_module(
        "catdog.evaluate",
        f"ckpt_path={ckpt}",
        f"data.source={kaggle_zip(tmp_path)}",
        f"data.cache_dir={tmp_path}/cache",
        f"hydra.run.dir={run}",
        "data.resolution=50",
        "data.channels=1",
        "data.progress=false",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["n_images"], metrics["n_skipped"], metrics["resolution"], metrics["channels"]) == (
        20,
        1,
        16,
        3,
    )
    assert [p.name.split("-")[1:3] for p in (tmp_path / "cache").iterdir()] == [["16px", "3ch"]]
    matrix = metrics["confusion_matrix"]
    assert sum(map(sum, matrix)) == 20 and [sum(r) for r in matrix] == [10, 10]
    # the metrics agree with an independent computation from predict on the same photos
    preds = Predictor.from_checkpoint(ckpt).predict(sorted((tmp_path / "src").rglob("*.png")))
    truth = ["Cat"] * 10 + ["Dog"] * 10
    assert metrics["all/acc"] == pytest.approx(
        sum(p["label"] == t for p, t in zip(preds, truth, strict=True)) / 20
    )
    assert metrics["all/acc"] == pytest.approx((matrix[0][0] + matrix[1][1]) / 20)
    # macro precision/recall/F1 from the confusion matrix (rows: truth), ROC AUC as Mann-Whitney U / (n0 n1)
    hits = [matrix[i][i] for i in range(2)]
    precision = [h / max(sum(r[i] for r in matrix), 1) for i, h in enumerate(hits)]
    recall = [h / 10 for h in hits]
    f1 = [2 * p * r / (p + r) if p + r else 0.0 for p, r in zip(precision, recall)]
    dog = [p["probabilities"]["Dog"] for p in preds]
    auroc = mannwhitneyu(dog[10:], dog[:10]).statistic / 100
    expected = {
        "all/precision": precision,
        "all/recall": recall,
        "all/f1": f1,
        "all/auroc": [auroc, auroc],
    }
    for key, values in expected.items():
        assert metrics[key] == pytest.approx(sum(values) / 2, abs=1e-4), key
    assert set(metrics["per_class"]) == {"Cat", "Dog"} and metrics["per_class"]["Cat"]["support"] == 10
    assert (run / "confusion_matrix.png").stat().st_size > 1000
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert {"all/acc", "all/f1", "all/auroc", "all/f1_Cat"} <= set(events.Tags()["scalars"])
    assert "all/confusion_matrix" in events.Tags()["images"]


def test_a_class_the_checkpoint_lacks_is_one_clear_error(ckpt, tmp_path):
    source = write_class_folders(tmp_path / "three", per_class=3, classes=("bird", "cat", "dog"))
    with pytest.raises(CatdogError, match=r"class bird is none of the classes of ckpt_path=.* \(Cat, Dog\)"):
        evaluate_in_process(ckpt, source, tmp_path / "out")


def test_missing_or_unreadable_checkpoint_is_named(tmp_path):
    source = write_class_folders(tmp_path / "data", per_class=2)
    with pytest.raises(CatdogError, match=r"ckpt_path=.*nope\.ckpt: no such file"):
        evaluate_in_process(tmp_path / "nope.ckpt", source, tmp_path / "out")
    (tmp_path / "bad.ckpt").write_bytes(b"\x00" * 100)
    with pytest.raises(CatdogError, match=r"ckpt_path=.*bad\.ckpt: cannot be read as a catdog checkpoint"):
        evaluate_in_process(tmp_path / "bad.ckpt", source, tmp_path / "out")
    with pytest.raises(CatdogError, match="ckpt_path is not set"):
        evaluate_in_process(None, source, tmp_path / "out")
    torch.save(torch.zeros(3), tmp_path / "tensor.ckpt")  # a PyTorch file, but not a checkpoint
    with pytest.raises(CatdogError, match=r"tensor\.ckpt: cannot be read as a catdog checkpoint"):
        catdog.load(tmp_path / "tensor.ckpt")
    with pytest.raises(CatdogError, match=r"ckpt_path=.*nope\.ckpt: no such file"):
        catdog.load(tmp_path / "nope.ckpt")
    with pytest.raises(CatdogError, match=r"ckpt_path=.*nope\.ckpt: no such file"):
        export(str(tmp_path / "nope.ckpt"), "onnx")


def test_a_batch_size_below_one_is_named_before_any_work(ckpt, tmp_path):
    source = write_class_folders(tmp_path / "data", per_class=2)
    with pytest.raises(CatdogError, match="data.batch_size=0 is invalid"):
        evaluate_in_process(ckpt, source, tmp_path / "out", "data.batch_size=0")
    assert not (tmp_path / "out" / "cache").exists()


def test_the_checkpoint_scores_on_the_gpu_where_there_is_one_else_on_the_cpu(ckpt, tmp_path):
    """device=auto (the default) picks the GPU where torch sees one, so the robustness report is not left to the CPU
    of a GPU machine; where there is none it scores as device=cpu does. device=cuda on a machine without a GPU is
    one message naming the key, before any photo is decoded."""
    gpu = torch.cuda.is_available()
    assert Predictor.from_checkpoint(ckpt, device="auto").device.type == ("cuda" if gpu else "cpu")
    assert Predictor.from_checkpoint(ckpt).device.type == "cpu"  # the Python API's default
    source = write_class_folders(tmp_path / "data", per_class=4)
    auto = evaluate_in_process(ckpt, source, tmp_path / "auto")
    on_cpu = evaluate_in_process(ckpt, source, tmp_path / "cpu", "device=cpu")
    assert auto["all/acc"] == pytest.approx(on_cpu["all/acc"], abs=1 / 8 if gpu else 0)
    if not gpu:
        with pytest.raises(
            CatdogError, match=r"device=cuda, but PyTorch sees no CUDA GPU.*Use device=cpu \(or auto\)"
        ):
            evaluate_in_process(ckpt, source, tmp_path / "cuda", "device=cuda")
        assert not (tmp_path / "cuda" / "cache").exists()


def test_cli_prints_the_message_without_a_traceback(tmp_path):
    """All entry points share cli.guarded and load_classifier; one subprocess shows what a user sees."""
    missing = tmp_path / "missing.ckpt"
    proc = run_module("catdog.evaluate", f"ckpt_path={missing}", "data.source=.", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 1
    assert f"error: ckpt_path={missing}: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("test_fraction", [0.25, 0.0])
def test_without_a_source_the_held_out_split_of_the_training_data_is_scored(tmp_path, caplog, test_fraction):
    source = write_class_folders(tmp_path / "PetImages", per_class=16)
    ckpt = train_checkpoint(source, tmp_path, data={"test_fraction": test_fraction, "seed": 3})
    caplog.set_level(logging.INFO)
    metrics = evaluate_in_process(ckpt, None, tmp_path / "eval")
    split = "test" if test_fraction else "val"
    settings = {"val_fraction": 0.25, "test_fraction": test_fraction, "seed": 3}
    dm = ImageDataModule(
        DataSettings.from_config(
            dict(source=str(source), resolution=16, channels=3, cache_dir=str(tmp_path / "cache"), **settings)
        )
    )
    dm.setup()
    assert metrics["split"] == split and metrics["n_images"] == len(dm.splits[split]) > 0
    # the names say what was scored; val chose the checkpoint, and the log says so
    assert f"{split}/acc" in metrics and {k.split("/")[0] for k in metrics if "/" in k} == {split}
    assert ("val/acc and val/ece are optimistic" in caplog.text) is (split == "val")
    assert metrics["n_seen_in_training"] == 0 and metrics["source"] == str(source)
    assert sum(map(sum, metrics["confusion_matrix"])) == len(dm.splits[split])
    assert f"scoring the held-out {split} split ({len(dm.splits[split])} photos) of {source}" in caplog.text

    caplog.clear()
    everything = evaluate_in_process(ckpt, source, tmp_path / "eval2")
    n_train = len(set(dm.splits["train"].tolist()))
    assert "all/acc" in everything and "test/acc" not in everything
    assert (everything["split"], everything["n_images"], everything["n_seen_in_training"]) == (
        "all",
        32,
        n_train,
    )
    assert f"{n_train} of the 32 photos scored were in the checkpoint's training split" in caplog.text


def test_split_val_scores_the_val_split_so_recipes_are_compared_without_test(tmp_path):
    source = write_class_folders(tmp_path / "PetImages", per_class=16)
    ckpt = train_checkpoint(source, tmp_path, data={"test_fraction": 0.25, "seed": 3})
    settings = {"val_fraction": 0.25, "test_fraction": 0.25, "seed": 3}
    dm = ImageDataModule(
        DataSettings.from_config(
            dict(source=str(source), resolution=16, channels=3, cache_dir=str(tmp_path / "cache"), **settings)
        )
    )
    dm.setup()
    val = evaluate_in_process(ckpt, None, tmp_path / "val", "split=val", "robustness=true")
    test = evaluate_in_process(ckpt, None, tmp_path / "test", "split=test")
    assert (val["split"], val["n_images"]) == ("val", len(dm.splits["val"]))
    assert (test["split"], test["n_images"]) == ("test", len(dm.splits["test"]))
    assert "val/acc" in val and "test/acc" not in val and "robustness/clean" in val
    with pytest.raises(CatdogError, match=r"split='train' is invalid: expected val or test"):
        evaluate_in_process(ckpt, None, tmp_path / "bad", "split=train")
    with pytest.raises(CatdogError, match=r"split=val: data.source=.* gives no val split \(no val/ folder"):
        evaluate_in_process(ckpt, source, tmp_path / "both", "split=val")
    no_test = train_checkpoint(source, tmp_path / "no_test", data={"test_fraction": 0.0, "seed": 3})
    with pytest.raises(CatdogError, match=r"split=test: .* has no test split .*score split=val"):
        evaluate_in_process(no_test, None, tmp_path / "none", "split=test")


def test_without_a_source_a_checkpoint_must_record_existing_training_data(tmp_path, caplog):
    source = write_class_folders(tmp_path / "PetImages", per_class=4)
    ckpt = train_checkpoint(source, tmp_path)
    checkpoint = torch.load(ckpt, weights_only=True)
    del checkpoint["ImageDataModule"]
    torch.save(checkpoint, tmp_path / "old.ckpt")
    with pytest.raises(CatdogError, match=r"old\.ckpt records no training data .*give data.source=PATH"):
        evaluate_in_process(tmp_path / "old.ckpt", None, tmp_path / "out")
    # with photos given it scores them, and cannot tell which of them were trained on
    with caplog.at_level(logging.WARNING):
        assert "all/acc" in evaluate_in_process(tmp_path / "old.ckpt", source, tmp_path / "given")
    assert "records no training photos to tell whether some of them were trained on" in caplog.text
    shutil.rmtree(source)
    with pytest.raises(CatdogError, match=rf"was trained on {source}, which is not there any more"):
        evaluate_in_process(ckpt, None, tmp_path / "out")
