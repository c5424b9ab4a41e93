"""`python -m catdog.<command> --help`: the command's own usage and settings, not Hydra's page of the training
config; the audit logs under its own name."""

from __future__ import annotations

import pytest
from helpers import run_module, write_class_folders

# each command with a setting its usage must name
COMMANDS = {
    "evaluate": "ckpt_path",
    "predict": "inputs",
    "export": "format",
    "serve": "port",
    "audit": "folds",
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_is_the_commands_written_usage(command, tmp_path):
    proc = run_module(f"catdog.{command}", "--help", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"python -m catdog.{command}" in proc.stdout.splitlines()[0]
    assert f"configs/{command}.yaml" in proc.stdout and f"\n{COMMANDS[command]}:" in proc.stdout.replace(
        "\n  ", "\n"
    )
    assert "Powered by Hydra" not in proc.stdout and "== Config ==" not in proc.stdout
    assert not (tmp_path / "run").exists(), "help runs nothing"


def test_the_audit_logs_as_catdog_audit_into_audit_log(tmp_path):
    from catdog.audit.__main__ import log

    assert log.name == "catdog.audit"
    root = write_class_folders(tmp_path / "PetImages", per_class=2)
    run = tmp_path / "run"
    proc = run_module(
        "catdog.audit", f"data.source={root}", f"data.cache_dir={tmp_path}/cache", f"hydra.run.dir={run}"
    )
    assert proc.returncode == 1 and "fewer than data.folds=5" in proc.stderr
    assert sorted(p.name for p in run.glob("*.log")) == ["audit.log"]
