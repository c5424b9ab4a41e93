"""Tiny but real runs of the framework: resume with continuous TensorBoard curves, sweeps that survive a failing
job (joblib, Optuna), DDP inside sweeps."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from helpers import (
    epochs_done,
    read_csv,
    run_train,
    sweep_overrides,
    tiny_datamodule,
    tiny_overrides,
    train_in_process,
)
from omegaconf import OmegaConf

from catdog.data import ImageDataModule
from catdog.models.classifier import ImageClassifier
from catdog.run.launch import threads_per_job
from catdog.sweeps.job_files import FAILURE_FILE


def tb_events(log_dir: Path) -> list[tuple[str, list]]:
    """(event file name, [(tag, step, plugin, content)]) per event file, in write order."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    out = []
    for f in sorted(log_dir.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        rows = [
            (v.tag, ev.step, v.metadata.plugin_data.plugin_name, v.metadata.plugin_data.content)
            for ev in EventFileLoader(str(f)).Load()
            for v in ev.summary.value
        ]
        out.append((f.name, rows))
    return out


# --- runs (tiny, but real) ---


@pytest.mark.slow
def test_resume_continues_epochs_and_tensorboard_curves(image_folder, tmp_path, capsys, caplog):
    overrides = tiny_overrides(image_folder, tmp_path)
    run_dir = tmp_path / "run"
    caplog.set_level(logging.INFO)
    train_in_process(*overrides)
    printed = capsys.readouterr().out
    assert "config" in printed and "model" in printed  # the config tree
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    steps_per_epoch = ckpt["global_step"]
    assert epochs_done(ckpt) == 1 and steps_per_epoch > 0

    first_best = json.loads((run_dir / "metrics.json").read_text())["val/acc_best"]
    train_in_process(*overrides, "ckpt_path=last", "trainer.max_epochs=2")
    assert "Restored all states" in caplog.text
    second = json.loads((run_dir / "metrics.json").read_text())
    assert second["val/acc_best"] == pytest.approx(max(first_best, second["val/acc"]))  # best over both runs
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert (epochs_done(ckpt), ckpt["global_step"]) == (2, 2 * steps_per_epoch)  # epoch 2 only, not 1 again
    assert ckpt["optimizer_states"][0]["state"]  # Adam's moments came along

    (_, first_events), (_, second_events) = tb_events(run_dir / "tensorboard")
    scalars = defaultdict(list)
    for events in (first_events, second_events):
        for tag, step, plugin, _ in events:
            if plugin != "hparams" and tag != "epoch":
                scalars[tag].append(step)
    for tag, steps in scalars.items():
        assert steps == sorted(set(steps)), f"{tag} has repeated or backwards steps: {steps}"
    assert len(scalars["val/acc"]) == 2 and len(scalars["val/loss"]) == 2  # one per epoch, no extra points

    from tensorboard.plugins.hparams import plugin_data_pb2

    hparams = {tag: content for tag, _, plugin, content in first_events if plugin == "hparams"}
    experiment = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {"val/acc", "val/loss"}
    session = plugin_data_pb2.HParamsPluginData.FromString(
        hparams["_hparams_/session_start_info"]
    ).session_start_info
    assert session.hparams["model.kernel"].number_value == 3
    assert session.hparams["data.resolution"].number_value == 16
    assert session.hparams["model.optimizer.lr"].number_value == pytest.approx(0.001)


@pytest.mark.slow
def test_parallel_sweep_survives_a_failing_job_and_summarises(image_folder, tmp_path):
    parallel = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    proc = run_train(
        "-m", *sweep_overrides(image_folder, tmp_path), *parallel, "data.resolution=16,4", check=False
    )
    sweep = tmp_path / "sweep"
    assert proc.returncode == 1 and "error: 1 of 2 sweep jobs failed (job 1)" in proc.stderr
    rows = read_csv(sweep / "summary.csv")
    assert [(r["data.resolution"], r["status"]) for r in rows] == [("16", "ok"), ("4", "failed")]
    assert rows[0]["error"] == "" and rows[0]["n_seeds"] == "1"
    (ok_dir,) = [p.parent for p in sweep.rglob("metrics.json")]
    correct = [r["correct"] for r in read_csv(ok_dir / "predictions_val.csv")]
    assert float(rows[0]["val/acc"]) == pytest.approx(correct.count("1") / len(correct))
    assert "data.resolution=4 is too small" in rows[1]["error"]
    assert "| failed |" in (sweep / "summary.md").read_text() and "Best val/acc" in proc.stdout
    (failed_dir,) = [p.parent for p in sweep.rglob(FAILURE_FILE)]
    assert "data.resolution=4" in (failed_dir / ".hydra" / "overrides.yaml").read_text()
    assert "Traceback" in (failed_dir / "train.log").read_text()  # the details are in the job's log
    assert len(list(sweep.rglob("events.out.tfevents.*"))) == 1  # the ok job has its own TensorBoard run
    logs = [p.read_text() for p in sweep.rglob("train.log")]
    assert len(logs) == 2 and all(
        f"2 parallel jobs: {threads_per_job(2)} torch threads each" in t for t in logs
    )


@pytest.mark.slow
def test_optuna_sweep_two_trials(image_folder, tmp_path):
    run_train(*sweep_overrides(image_folder, tmp_path), "hparams_search=optuna", "hydra.sweeper.n_trials=2")
    sweep = tmp_path / "sweep"
    rows = read_csv(sweep / "summary.csv")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert "model.optimizer.lr" in rows[0] and rows[0]["model.optimizer.lr"] != rows[1]["model.optimizer.lr"]
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert best.best_value == max(float(r["val/acc"]) for r in rows)
    assert {p.name for p in sweep.iterdir() if p.is_dir()} == {"0", "1"}


# two jobs in one process show that a job's ranks end before the next job starts theirs; joblib's two workers need
# three jobs for one worker to run a second job
@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher, kernels",
    [([], (1, 3)), (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], (1, 3, 5))],
    ids=["basic", "joblib"],
)
def test_every_job_of_a_ddp_sweep_runs_on_all_its_ranks(image_folder, tmp_path, launcher, kernels):
    sweep_values = ",".join(map(str, kernels))
    ddp = ["trainer=ddp_cpu", "trainer.devices=2"]
    run_train("-m", *sweep_overrides(image_folder, tmp_path), *launcher, *ddp, f"model.kernel={sweep_values}")
    sweep = tmp_path / "sweep"
    rows = read_csv(sweep / "summary.csv")
    assert [(r["model.kernel"], r["status"]) for r in rows] == [(str(k), "ok") for k in kernels]
    # each job's val/acc is the accuracy of all validation photos (each process scored half), as its model gets it
    dm = tiny_datamodule(image_folder, tmp_path / "cache", channels=1)
    x, y = dm.dataset("val").__getitems__(list(range(len(dm.splits["val"]))))
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    for job, kernel, row in zip(jobs, kernels, rows, strict=True):
        assert (job / "train_ddp_rank1.log").exists()  # rank 1 ran this job, in this job's dir
        assert OmegaConf.load(job / ".hydra" / "config.yaml").model.kernel == kernel
        assert len(list(job.rglob("events.out.tfevents.*"))) == 1  # only rank zero writes
        ckpt = torch.load(job / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
        assert ckpt["global_step"] == 2  # 30 training images / 2 processes / batch 8: 2 steps each
        assert ckpt["hyper_parameters"]["kernel"] == kernel
        model = ImageClassifier.load_from_checkpoint(
            job / "checkpoints" / "last.ckpt", map_location="cpu"
        ).eval()
        with torch.no_grad():
            accuracy = (model.predict_logits(x).argmax(1) == y).float().mean().item()
        assert float(row["val/acc"]) == pytest.approx(accuracy)
        assert_predictions(job / "predictions_val.csv", dm, "val", model)  # rank 0 wrote both ranks' photos
    assert "paired val photos over 1 pair(s) of runs" in (sweep / "summary.md").read_text()


def assert_predictions(path: Path, dm: ImageDataModule, split: str, model: ImageClassifier) -> None:
    """`path` holds every photo of the split once, in split order, with the model's own prediction of it."""
    index = dm.splits[split]
    x, _ = dm.dataset(split).__getitems__(list(range(len(index))))
    with torch.no_grad():
        confidence, predicted = model.predict_logits(x).float().softmax(1).max(1)
    rows = read_csv(path)
    assert [r["path"] for r in rows] == [dm.arrays.photos["path"][i] for i in index]
    assert [r["label"] for r in rows] == [dm.classes[dm.arrays.labels[i]] for i in index]
    assert [r["predicted"] for r in rows] == [dm.classes[p] for p in predicted.tolist()]
    assert [float(r["probability"]) for r in rows] == pytest.approx(confidence.tolist(), abs=1e-5)


@pytest.mark.slow
def test_ddp_run_writes_every_held_out_photo_once(image_folder, tmp_path):
    """7 test photos on 2 processes: the DistributedSampler scores one of them twice (its padding)."""
    data = ["data.val_fraction=0.25", "data.test_fraction=0.175", "test=true"]
    run_train(*tiny_overrides(image_folder, tmp_path), *data, "trainer=ddp_cpu", "trainer.devices=2")
    run = tmp_path / "run"
    dm = tiny_datamodule(image_folder, tmp_path / "cache", channels=1, test_fraction=0.175)
    assert (len(dm.splits["val"]), len(dm.splits["test"])) == (10, 7)
    model = ImageClassifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu").eval()
    for split in ("val", "test"):  # one epoch: the best checkpoint, which test scores, is the last
        assert_predictions(run / f"predictions_{split}.csv", dm, split, model)
