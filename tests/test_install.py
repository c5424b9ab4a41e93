"""The package as installed: the `catdog` command, and `import catdog` from the folder above a clone named catdog
(the editable install puts the clone on sys.path as a regular package, found before the clone folder itself)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, tiny_overrides, write_class_folders

CATDOG = Path(sys.executable).parent / "catdog"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_import_from_the_folder_above_a_clone_named_catdog(tmp_path):
    (tmp_path / "catdog").symlink_to(ROOT, target_is_directory=True)
    proc = run(sys.executable, "-c", "import catdog; print(catdog.__file__); catdog.load", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == ROOT / "catdog" / "__init__.py"


def test_the_catdog_command_lists_its_commands_and_refuses_others(tmp_path):
    proc = run(str(CATDOG), "--help", cwd=tmp_path)
    assert proc.returncode == 0
    for command in ("train", "prepare", "evaluate", "predict", "export", "serve", "audit"):
        assert f"\n  {command} " in proc.stdout
    proc = run(str(CATDOG), "trian", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: catdog has no command 'trian'")


def test_catdog_train_composes_the_same_config_as_train_py_from_any_folder(tmp_path):
    via_command = run(str(CATDOG), "train", "model.kernel=3", "--cfg", "job", cwd=tmp_path)
    via_script = run(sys.executable, str(ROOT / "train.py"), "model.kernel=3", "--cfg", "job", cwd=ROOT)
    assert via_command.returncode == 0, via_command.stderr
    assert "kernel: 3" in via_command.stdout
    assert via_command.stdout == via_script.stdout


def test_catdog_prepare_runs_from_any_folder(tmp_path):
    source = write_class_folders(tmp_path / "photos", per_class=4)
    proc = run(
        str(CATDOG), "prepare", f"data.source={source}", f"data.cache_dir={tmp_path / 'cache'}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "cache:" in proc.stdout


@pytest.mark.slow
def test_catdog_train_trains_one_epoch_outside_the_clone(tmp_path):
    source = write_class_folders(tmp_path / "photos", per_class=6)
    proc = run(str(CATDOG), "train", *tiny_overrides(source, tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((tmp_path / "out").rglob("last.ckpt"))
