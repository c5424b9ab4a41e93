"""Runs killed, pre-empted or interrupted during training resume where they stopped: SIGKILL, SIGTERM, Ctrl-C,
a dead DDP rank, exact mid-epoch resumes, and the messages when a checkpoint cannot be resumed."""

from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from helpers import (
    ROOT,
    epochs_done,
    read_csv,
    sweep_overrides,
    tiny_overrides,
    train_in_process,
    write_class_folders,
)
from omegaconf import OmegaConf
from warm_python import run_python

from catdog.errors import CatdogError

# augmentation and dropout draw from the global RNG: an exact resume must restore it
RANDOM_MODEL = [
    "model.dropout=0.3",
    "model.augment={hflip:true,translate:2}",
    "trainer.deterministic=true",
]


def train_process(*overrides: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    # Ctrl-C works as in a terminal even where this test runs with SIGINT ignored (a background job)
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *overrides],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(
                f"the process ended first ({proc.returncode}):\n{proc.stdout.read()[-4000:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.05)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def scalar_steps(log_dir: Path) -> dict[str, list[int]]:
    """Per tag, the steps TensorBoard shows: like its reader, a file's SessionLog START at step P (purge_step) hides
    the earlier files' events at or after P (what a killed run logged after its last checkpoint)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.compat.proto.event_pb2 import SessionLog

    shown: dict[str, list[int]] = {}
    for f in sorted(log_dir.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        for event in EventFileLoader(str(f)).Load():
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                shown = {tag: [s for s in steps if s < event.step] for tag, steps in shown.items()}
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name != "hparams" and v.tag != "epoch":
                    shown.setdefault(v.tag, []).append(event.step)
    return shown


# --- the data: batch order, cache ---

# --- kills and pre-emption during training (tiny, but real) ---


@pytest.mark.slow
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(image_folder, tmp_path):
    def overrides(out: Path, *extra: str) -> list[str]:
        return [*tiny_overrides(image_folder, out), f"data.cache_dir={tmp_path}/cache", *RANDOM_MODEL, *extra]

    train_in_process(*overrides(tmp_path / "a", "trainer.max_epochs=2"))
    train_in_process(*overrides(tmp_path / "b", "trainer.max_epochs=1"))
    train_in_process(*overrides(tmp_path / "b", "trainer.max_epochs=2", "ckpt_path=last"))
    a, b = (load(tmp_path / x / "run" / "checkpoints" / "last.ckpt") for x in ("a", "b"))
    assert (epochs_done(a), a["global_step"]) == (epochs_done(b), b["global_step"]) == (2, 8)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, weights in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], weights, rtol=0, atol=1e-6, msg=name)


def preset_overrides(source: Path, out: Path, *extra: str) -> list[str]:
    """experiment=fast on tiny data: batch norm, gap head, the tensor loader, channels_last, bf16, one-cycle."""
    tiny = [o for o in tiny_overrides(source, out) if not o.startswith(("model.hidden", "model.kernel"))]
    # channels_last as on the machines the preset measured it faster on (a tiny net may measure either way)
    fixed = ["model.channels_last=true", "trainer.precision=bf16-mixed", "trainer.deterministic=true"]
    return ["experiment=fast", *tiny, *fixed, *extra]


@pytest.mark.slow
def test_an_end_of_epoch_resume_on_the_presets_path_equals_an_uninterrupted_run(image_folder, tmp_path):
    # every epoch's checkpoint is kept; a new run resumes from the first one and trains the second epoch again
    train_in_process(
        *preset_overrides(
            image_folder, tmp_path / "a", "trainer.max_epochs=2", "callbacks.model_checkpoint.save_top_k=-1"
        )
    )
    checkpoints = tmp_path / "a" / "run" / "checkpoints"
    (first_epoch,) = checkpoints.glob("epoch000-*.ckpt")
    train_in_process(
        *preset_overrides(image_folder, tmp_path / "b", "trainer.max_epochs=2", f"ckpt_path={first_epoch}")
    )
    a, b = load(checkpoints / "last.ckpt"), load(tmp_path / "b" / "run" / "checkpoints" / "last.ckpt")
    assert (epochs_done(a), a["global_step"]) == (epochs_done(b), b["global_step"]) == (2, 8)
    assert a["hyper_parameters"]["channels_last"] and a["hyper_parameters"]["batchnorm"]
    assert any(k.endswith("running_mean") for k in a["state_dict"])  # batch norm statistics resume too
    for name, weights in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], weights, rtol=0, atol=0, msg=name)
    torch.testing.assert_close(b["optimizer_states"], a["optimizer_states"], rtol=0, atol=0)


@pytest.mark.slow
def test_sigkill_mid_training_resumes_from_the_last_checkpoint(tmp_path, caplog):
    source = write_class_folders(tmp_path / "PetImages", per_class=60)
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    overrides = [*tiny_overrides(source, tmp_path), "trainer.log_every_n_steps=1"]
    proc = train_process(*overrides, "trainer.max_epochs=1000")
    wait_for(lambda: last.exists() and load_or_none(last) is not None and epochs_done(load(last)) >= 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = load(last)  # written atomically: complete, whatever the moment of the kill
    epochs, step = epochs_done(saved), saved["global_step"]
    (listing,) = (tmp_path / "cache").glob("*/splits/seed0-val0.25-test0.0/splits.csv")
    per_epoch = -(-listing.read_text().count(",train\n") // 8)  # batches of 8 (about 90 training photos)
    assert step == per_epoch * epochs

    # the resumed run itself is no subject here: in this process, without the seconds of a new one's imports
    caplog.set_level(logging.INFO)
    train_in_process(*overrides, "ckpt_path=last", f"trainer.max_epochs={epochs + 1}")
    assert "Restored all states" in caplog.text
    final = load(last)
    assert (epochs_done(final), final["global_step"]) == (epochs + 1, step + per_epoch)  # that epoch, once

    steps = scalar_steps(run / "tensorboard")
    assert steps["train/batch_loss"] == list(range(per_epoch * (epochs + 1)))  # no gap, no repeat
    assert len(steps["val/acc"]) == epochs + 1


def load_or_none(path: Path):
    try:
        return load(path)
    except Exception:  # noqa: BLE001 - not there yet
        return None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "how"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")]
)
def test_sigterm_or_ctrl_c_saves_a_checkpoint_mid_epoch_and_the_run_resumes(
    tmp_path, signum, code, how, caplog
):
    source = write_class_folders(tmp_path / "PetImages", per_class=60)
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    overrides = [*tiny_overrides(source, tmp_path), "data.batch_size=1", "trainer.log_every_n_steps=1"]
    proc = train_process(*overrides, "trainer.max_epochs=1000")
    events = run / "tensorboard"
    wait_for(lambda: any(events.glob("events.out.tfevents.*")) and last.exists(), proc)  # training under way
    time.sleep(
        0.3
    )  # into the next epoch: a Ctrl-C in the hooks that end an epoch is not what this test is about
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == code and "Traceback" not in out
    status = f"error: stopped by {how}"
    assert f"{status}" in out and f"{last} is saved; resume with `" in out
    assert (
        f"data.batch_size=1 trainer.log_every_n_steps=1 trainer.max_epochs=1000 hydra.run.dir={run} ckpt_path=last`"
        in out
    )
    saved = load(last)
    epochs, step = epochs_done(saved), saved["global_step"]
    assert step > 0

    caplog.set_level(logging.INFO)
    train_in_process(*overrides, "ckpt_path=last", f"trainer.max_epochs={epochs + 1}")
    assert "Restored all states" in caplog.text
    final = load(last)
    (listing,) = (tmp_path / "cache").glob("*/splits/seed0-val0.25-test0.0/splits.csv")
    steps_per_epoch = listing.read_text().count(",train\n")  # batch_size=1: one step per training photo
    assert (epochs_done(final), final["global_step"]) == (epochs + 1, steps_per_epoch * (epochs + 1))


@pytest.mark.slow
def test_the_printed_command_resumes_with_the_runs_overrides_and_keeps_its_record(tmp_path):
    source = write_class_folders(tmp_path / "PetImages", per_class=60)
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    # no run of the default config could resume this: other data, another net
    overrides = [*tiny_overrides(source, tmp_path), "data.batch_size=1", "trainer.max_epochs=3"]
    proc = train_process(*overrides)
    wait_for(last.exists, proc)  # epoch 0 is done
    first, epoch_0_done = last.stat().st_mtime_ns, time.monotonic()
    wait_for(lambda: last.stat().st_mtime_ns != first, proc)  # and epoch 1: how long an epoch takes here
    # a third into epoch 2 (a fixed 0.3 s after epoch 0 once landed on the end of epoch 1: 89 steps took < 0.3 s)
    time.sleep((time.monotonic() - epoch_0_done) / 3)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out
    hydra_files = {p.name: p.read_bytes() for p in (run / ".hydra").glob("*.yaml")}
    assert set(hydra_files) == {"config.yaml", "hydra.yaml", "overrides.yaml"}

    (command,) = re.findall(r"resume with `([^`]+)`", out)
    args = shlex.split(command)
    task = [o for o in overrides if not o.startswith("hydra.run.dir=")]
    assert args[2:] == [*task, f"hydra.run.dir={run}", "ckpt_path=last"]
    python = sys.executable if args[0] == "python" else args[0]
    resumed = subprocess.run([python, *args[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert epochs_done(load(last)) == 3
    # the run's record is the run as it was started; the resume has its own
    assert {p.name: p.read_bytes() for p in (run / ".hydra").glob("*.yaml")} == hydra_files
    first = run / ".hydra" / "resume_1"
    assert list(OmegaConf.load(first / "overrides.yaml")) == [*task, "ckpt_path=last"]
    assert OmegaConf.load(first / "config.yaml").data.source == str(source)

    # the README's shorter form restores the overrides of the run dir's last run; the command line's win
    resumed = subprocess.run(
        [sys.executable, "train.py", f"hydra.run.dir={run}", "ckpt_path=last", "trainer.max_epochs=4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    kept = [o for o in task if not o.startswith("trainer.max_epochs=")]
    assert f"Resuming {run} with its overrides: {shlex.join(kept)}" in resumed.stderr
    assert epochs_done(load(last)) == 4
    second = OmegaConf.load(run / ".hydra" / "resume_2" / "overrides.yaml")
    assert list(second) == [*kept, "ckpt_path=last", "trainer.max_epochs=4"]
    assert (run / ".hydra" / "overrides.yaml").read_bytes() == hydra_files["overrides.yaml"]


def test_only_a_resume_in_a_recorded_run_dir_restores_overrides(tmp_path):
    from catdog.shell.rerun import restore_overrides

    run = tmp_path / "multirun" / "data.seed=1,model.net.kernel=3"  # Hydra's quoting for a dir with = and ,
    (run / ".hydra").mkdir(parents=True)
    # a run of catdog 0.2, which spelled the network's keys model.net.*
    (run / ".hydra" / "overrides.yaml").write_text("- data.seed=1\n- model.net.kernel=3\n- ckpt_path=auto\n")
    quoted = f"hydra.run.dir='{run}'"
    assert restore_overrides([quoted, "ckpt_path=last", "data.seed=2"]) == [
        "model.kernel=3",
        quoted,
        "ckpt_path=last",
        "data.seed=2",
    ]
    for argv in ([quoted], [quoted, f"ckpt_path={tmp_path}/other.ckpt"], ["ckpt_path=last"]):
        assert restore_overrides(argv) == argv  # a new run, a checkpoint from elsewhere, no run dir given


def pids_with(*words: str) -> list[int]:
    """The processes whose command line holds every one of `words`."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        if all(w in args for w in words):
            pids.append(int(cmdline.parent.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the rank-1 process through /proc")
def test_a_rank_killed_during_training_fails_its_job_and_the_sweep_goes_on(image_folder, tmp_path):
    sweep = tmp_path / "sweep"
    proc = train_process(
        "-m",
        *sweep_overrides(image_folder, tmp_path),
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "trainer.max_epochs=1000,1",
    )
    wait_for(lambda: (sweep / "0" / "checkpoints" / "last.ckpt").exists(), proc)  # job 0 is training
    (rank1,) = pids_with("hydra.job.name=train_ddp_rank1", str(sweep / "0"))
    os.kill(rank1, signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1 and "error: 1 of 2 sweep jobs failed (job 0)" in out
    rows = read_csv(sweep / "summary.csv")
    assert [(r["trainer.max_epochs"], r["status"]) for r in rows] == [("1000", "failed"), ("1", "ok")]
    assert (sweep / "0" / "failed.json").exists() and (sweep / "1" / "train_ddp_rank1.log").exists()
    assert not pids_with(str(sweep))  # no rank left behind


@pytest.mark.slow
def test_a_run_stopped_mid_epoch_by_sigterm_resumes_exactly(tmp_path, caplog):
    source = write_class_folders(tmp_path / "PetImages", per_class=60)  # about 90 training images

    def overrides(out: Path, *extra: str) -> list[str]:
        return [
            *tiny_overrides(source, out),
            f"data.cache_dir={tmp_path}/cache",
            "data.batch_size=1",
            "trainer.limit_val_batches=2",
            "trainer.max_epochs=3",
            *RANDOM_MODEL,
            *extra,
        ]

    last = tmp_path / "b" / "run" / "checkpoints" / "last.ckpt"
    proc = train_process(*overrides(tmp_path / "b"))
    wait_for(last.exists, proc)  # epoch 0 is done
    first, epoch_0_done = last.stat().st_mtime_ns, time.monotonic()
    wait_for(lambda: last.stat().st_mtime_ns != first, proc)  # and epoch 1: how long an epoch takes here
    # a third into epoch 2 (a fixed 0.3 s after epoch 0 once landed on the end of epoch 1: 89 steps took < 0.3 s)
    time.sleep((time.monotonic() - epoch_0_done) / 3)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 143
    step = load(last)["global_step"]
    (listing,) = (tmp_path / "cache").glob("*/splits/seed0-val0.25-test0.0/splits.csv")
    n = listing.read_text().count(",train\n")  # batch_size=1: one step per training photo
    assert n < step < 3 * n and step % n, step  # stopped mid-epoch
    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        train_in_process(*overrides(tmp_path / "b"), "ckpt_path=last")
    assert "Restored all states" in caplog.text
    assert not [w for w in warned if "not resumable" in str(w.message)]  # Lightning's mid-epoch warning
    train_in_process(*overrides(tmp_path / "a"))
    a, b = (load(tmp_path / x / "run" / "checkpoints" / "last.ckpt") for x in ("a", "b"))
    assert a["global_step"] == b["global_step"] == 3 * n
    for name, weights in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], weights, rtol=0, atol=1e-6, msg=name)


# --- user errors ---


@pytest.mark.slow
def test_resuming_on_data_with_other_classes_names_the_checkpoint(tmp_path):
    two = write_class_folders(tmp_path / "two")
    three = write_class_folders(tmp_path / "three", per_class=8, classes=("Cat", "Dog", "Fox"))
    train_in_process(*tiny_overrides(two, tmp_path))
    # a CatdogError: every entry point prints it as one line (test_train's CLI tests show that)
    with pytest.raises(
        CatdogError, match=r"has 3 classes \(Cat, Dog, Fox\), but ckpt_path=\S+/last\.ckpt was trained on 2"
    ):
        train_in_process(*tiny_overrides(three, tmp_path), "ckpt_path=last", "trainer.max_epochs=2")


def test_an_unreadable_checkpoint_to_resume_is_named(image_folder, tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CatdogError, match=re.escape(f"ckpt_path={bad}")):
        train_in_process(*tiny_overrides(image_folder, tmp_path), f"ckpt_path={bad}")


def test_hydra_full_error_shows_the_traceback(image_folder, tmp_path):
    args = [
        sys.executable,
        str(ROOT / "train.py"),
        *tiny_overrides(image_folder, tmp_path),
        "data.resolution=-3",
    ]
    proc = run_python(args[1:], cwd=ROOT, env={**os.environ, "HYDRA_FULL_ERROR": "1"}, timeout=600)
    assert (
        proc.returncode != 0 and "Traceback" in proc.stderr and "data.resolution=-3 is invalid" in proc.stderr
    )


def test_a_checkpoint_without_training_state_cannot_be_resumed_and_says_so(image_folder, tmp_path):
    from helpers import train_checkpoint

    from catdog.run.training import check_resume

    path = train_checkpoint(image_folder, tmp_path)
    assert check_resume(str(path), ["Cat", "Dog"], str(image_folder)) >= 1  # a whole one resumes
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["loops"]
    torch.save(checkpoint, tmp_path / "weights.ckpt")
    with pytest.raises(CatdogError, match=r"weights\.ckpt: holds weights but no training state"):
        check_resume(str(tmp_path / "weights.ckpt"), ["Cat", "Dog"], str(image_folder))
