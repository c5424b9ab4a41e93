"""The warm interpreter the CLI tests fork from (warm_python.py) behaves as a new `python` would: argv, working
directory, sys.path, environment, output, exit codes, timeouts; a command it cannot serve runs in a new one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT
from warm_python import SESSION_ENV, WARM, run_python, warm_run

SCRIPT = """
import os, sys
print("argv", sys.argv[1:])
print("cwd", os.getcwd())
print("path0", sys.path[0])
print("name", __name__)
print("unbuffered", os.environ.get("PYTHONUNBUFFERED"))
print("to stderr", file=sys.stderr)
print("parent", os.getppid(), file=sys.stderr)
if sys.argv[1:] == ["exit"]:
    raise SystemExit(3)
if sys.argv[1:] == ["raise"]:
    raise ValueError("bad input")
"""


def both(
    args: list[str], cwd: Path, env: dict
) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """The command forked from the warm server (whatever CATDOG_TEST_COLD_PYTHON says) and in a new interpreter."""
    cold = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    warm = WARM.run(args, cwd=cwd, env=env, timeout=120)
    assert warm is not None  # the server took it
    return warm, cold


def without_parent(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if not line.startswith("parent "))


@pytest.mark.parametrize("argv", [["a", "b=1"], ["exit"], ["raise"]])
def test_a_forked_script_runs_as_a_new_interpreter_would(tmp_path, argv):
    script = tmp_path / "scripts" / "show.py"
    script.parent.mkdir()
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    warm, cold = both([str(script), *argv], tmp_path, env)
    assert f"parent {WARM.server.pid}" in warm.stderr  # forked from the server, not started afresh
    assert (warm.returncode, warm.stdout) == (cold.returncode, cold.stdout)
    assert warm.returncode == {"a": 0, "exit": 3, "raise": 1}[argv[0]]
    assert f"path0 {script.parent}" in warm.stdout and f"cwd {tmp_path}" in warm.stdout
    assert "unbuffered 1" in warm.stdout and "name __main__" in warm.stdout
    if argv == ["raise"]:  # the traceback ends as the interpreter's does
        assert warm.stderr.rstrip().endswith("ValueError: bad input")
        assert cold.stderr.rstrip().endswith("ValueError: bad input")
    else:
        assert without_parent(warm.stderr) == without_parent(cold.stderr) == "to stderr"


def test_a_forked_module_runs_as_python_m_would(tmp_path):
    (tmp_path / "shown.py").write_text(SCRIPT)
    warm, cold = both(["-m", "shown", "x"], tmp_path, dict(os.environ))
    assert f"parent {WARM.server.pid}" in warm.stderr
    assert warm.returncode == cold.returncode == 0
    assert warm.stdout == cold.stdout
    assert f"path0 {tmp_path}" in warm.stdout and "argv ['x']" in warm.stdout


def test_a_command_with_another_environment_runs_in_a_new_interpreter(tmp_path):
    """Libraries read their environment when imported: a command that changes it cannot share the server's."""
    script = tmp_path / "show.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "HOME": str(tmp_path)}
    assert WARM.run([str(script)], cwd=tmp_path, env=env, timeout=120) is None
    proc = run_python([str(script)], cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0 and f"parent {os.getpid()}" in proc.stderr


def test_a_forked_command_past_its_timeout_is_killed_with_what_it_started(tmp_path):
    script = tmp_path / "hang.py"
    script.write_text(
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '600'])\n"
        "print(os.getpid(), child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    with pytest.raises(subprocess.TimeoutExpired) as timed_out:
        WARM.run([str(script)], cwd=tmp_path, env=dict(os.environ), timeout=5)
    pids = [int(p) for p in timed_out.value.stdout.split()]
    assert len(pids) == 2

    def alive(pid: int) -> bool:
        stat = Path(f"/proc/{pid}/stat")
        return stat.exists() and stat.read_text().split(")")[1].split()[0] != "Z"

    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in pids)
    again = tmp_path / "again.py"
    again.write_text("import os; print(os.getppid())")
    proc = WARM.run([str(again)], cwd=tmp_path, env=dict(os.environ), timeout=60)
    assert proc is not None and proc.stdout.strip() == str(WARM.server.pid)  # the server still serves


def test_warm_run_forks_the_projects_commands_and_passes_the_rest_on(tmp_path):
    """The benchmarks' tests route subprocess.run through warm_run: train.py and `-m catdog.X` are forked; `python
    -c` (a fresh interpreter on purpose) and scripts outside the clone run as they were."""
    real = []
    run = warm_run(lambda command, **kwargs: real.append(command) or subprocess.run(command, **kwargs))
    proc = run([sys.executable, str(ROOT / "train.py"), "--help"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and "Configuration groups" in proc.stdout and real == []
    (tmp_path / "outside.py").write_text("print('outside')")
    run([sys.executable, "-c", "pass"], capture_output=True, text=True, check=True)
    assert (
        run([sys.executable, str(tmp_path / "outside.py")], capture_output=True, text=True).stdout
        == "outside\n"
    )
    assert [c[1] for c in real] == ["-c", str(tmp_path / "outside.py")]


def test_catdog_test_cold_python_runs_every_command_in_a_new_interpreter(tmp_path, monkeypatch):
    script = tmp_path / "show.py"
    script.write_text(SCRIPT)
    monkeypatch.setenv("CATDOG_TEST_COLD_PYTHON", "1")
    proc = run_python(
        [str(script)], cwd=tmp_path, env=dict(SESSION_ENV), timeout=120
    )  # an env it would serve
    assert proc.returncode == 0 and f"parent {os.getpid()}" in proc.stderr
