"""What a run prints: none of Lightning's lines a newcomer mistakes for errors (its cloud tips, the `srun` hint
outside SLURM, "Total FLOPs: 0"), and a line before torch.compile's silent minute. Real runs of train.py."""

from __future__ import annotations

import os
import re

import pytest
from helpers import run_train, tiny_overrides


@pytest.mark.slow
@pytest.mark.skipif("SLURM_JOB_ID" in os.environ, reason="inside a SLURM allocation the srun hint is kept")
def test_a_run_prints_no_cloud_tips_no_srun_hint_and_counts_flops(image_folder, tmp_path):
    bin_dir = (
        tmp_path / "bin"
    )  # SLURM's tools installed, as on a cluster's login node or a workstation with them
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    proc = run_train(
        *tiny_overrides(image_folder, tmp_path),
        env_extra={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
    )
    out = proc.stdout + proc.stderr
    assert "Tip:" not in out and "litlogger" not in out and "litmodels" not in out
    assert "srun" not in out
    flops = re.search(r"Total FLOPs: (\S+)", out)
    assert flops and flops.group(1) != "0"
    assert "`Trainer.fit` stopped: `max_epochs=1` reached." in out  # Lightning's other lines still come


@pytest.mark.slow
def test_a_compiled_run_says_it_compiles_before_the_first_step(image_folder, tmp_path):
    proc = run_train(
        *tiny_overrides(image_folder, tmp_path),
        "model.compile=true",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
    )
    out = proc.stdout + proc.stderr
    said = out.find("model.compile=true: torch.compile compiles the network on its first batches")
    # before the sanity check's batches (compiled first) and the training's (after the sample grid)
    assert 0 <= said < out.find("Sample images with their labels")
