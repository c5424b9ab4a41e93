"""The design card's three uses, run as written (plus a tiny budget on generated photos): the kernel sweep
`python train.py -m model.kernel=3,5`, a resolution and channels override, and `trainer.accelerator=gpu`.
What each job trained is read back from its checkpoint, not from the config it echoes; the resolution override runs
in this process (train.py's composition and training, without its seconds of imports)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT, run_train, tiny_overrides, train_in_process, zip_tree
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from catdog.checkpoint import load_classifier


def first_conv(ckpt) -> torch.nn.Conv2d:
    return next(m for m in load_classifier(ckpt).net.modules() if isinstance(m, torch.nn.Conv2d))


def budget(image_folder, tmp_path) -> list[str]:
    """tiny_overrides less the network keys the card's commands set themselves and the run dir a sweep replaces."""
    return [
        o
        for o in tiny_overrides(image_folder, tmp_path)
        if not o.startswith(("model.kernel=", "hydra.run.dir=", "data.resolution="))
    ]


def test_the_kernel_sweep_trains_one_net_per_kernel_each_with_its_own_tensorboard(image_folder, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_train(
        "-m",
        "model.kernel=3,5",
        *budget(image_folder, tmp_path),
        "data.resolution=24",
        f"hydra.sweep.dir={sweep}",
    )
    jobs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").exists())
    assert [first_conv(job / "checkpoints" / "last.ckpt").kernel_size for job in jobs] == [(3, 3), (5, 5)]
    summary = (sweep / "summary.md").read_text()
    assert "model.kernel" in summary and "model.net" not in summary
    # the summary reads each job's TensorBoard curves without TensorBoard's "No path found after <file>" per job
    assert "No path found" not in proc.stdout + proc.stderr
    for job in jobs:
        events = EventAccumulator(str(job / "tensorboard")).Reload()
        assert "val/acc" in events.Tags()["scalars"]
        # the HPARAMS tab lists the key as the command line wrote it
        hparams = b"".join(p.read_bytes() for p in (job / "tensorboard").rglob("events.out.tfevents.*"))
        assert b"model.kernel" in hparams and b"model.net" not in hparams


def test_resolution_and_channels_overrides_reach_the_network(image_folder, tmp_path):
    # the card's overrides composed as train.py composes them, in this process: the sweep above and the make test
    # below run the command itself, and a new process would spend ~5 s of CPU importing torch and Lightning
    train_in_process(
        *budget(image_folder, tmp_path),
        "data.resolution=24",
        "data.channels=3",
        f"hydra.run.dir={tmp_path}/run",
    )
    model = load_classifier(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert (
        model.hparams.resolution,
        first_conv(tmp_path / "run" / "checkpoints" / "last.ckpt").in_channels,
    ) == (24, 3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_the_gpu_override_without_a_gpu_is_one_line(image_folder, tmp_path):
    proc = run_train(*budget(image_folder, tmp_path), "trainer.accelerator=gpu", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: trainer.accelerator=gpu, but PyTorch sees no CUDA GPU")


def test_python_train_py_pasted_after_make_train_runs_in_the_venv_on_the_photos_make_found(
    image_folder, tmp_path
):
    """A copy of the project whose only photos are the machines' shared zip: `make train` links it into data/, and
    the card's `python train.py ...`, run by the shell's python (no venv activated), trains on the same photos."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Makefile", "train.py", "configs"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, project / name)
    (project / ".venv").symlink_to(Path(sys.prefix))  # what `make install` made
    (tmp_path / "shared").mkdir()
    shared = zip_tree(image_folder, tmp_path / "shared" / "PetImages-180.zip")
    overrides = [o for o in budget(image_folder, tmp_path) if not o.startswith("data.source=")]
    env = {k: v for k, v in os.environ.items() if k != "CATDOG_DATA"}
    make = [
        "make",
        "-s",
        "-o",
        ".venv/.installed",
        f"SHARED_ZIP={shared}",
        "train",
        f"ARGS={' '.join(overrides)}",
    ]
    proc = subprocess.run(make, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (project / "data" / "PetImages-180.zip").resolve() == shared.resolve()
    shell_python = Path(sys.base_prefix) / "bin" / "python3"
    card = [str(shell_python), "train.py", *overrides, "trainer.fast_dev_run=true"]
    proc = subprocess.run(card, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Loaded cached arrays" in proc.stdout + proc.stderr  # the photos `make train` trained on


def test_make_sweep_runs_the_cards_kernel_sweep_on_the_photos_given():
    """`make sweep` is the card's `python train.py -m model.kernel=3,5` (README: "also: make sweep") on DATA's
    photos, ARGS added: not another preset or a shorter budget."""

    def sweep(*variables: str) -> list[str]:
        make = ["make", "-n", "-s", "-o", ".venv/.installed", "sweep", *variables]
        proc = subprocess.run(make, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        (command,) = [line for line in proc.stdout.splitlines() if "train.py" in line]
        return shlex.split(command)

    card = [".venv/bin/python", "train.py", "-m", "model.kernel=3,5"]
    assert sweep("DATA=my photos") == [*card, "data.source='my photos'"]
    assert sweep("DATA=my photos", "ARGS=trainer.max_epochs=1") == [
        *card,
        "data.source='my photos'",
        "trainer.max_epochs=1",
    ]
