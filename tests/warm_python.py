"""A warm `python` for the tests that run `python train.py` or `python -m catdog.X` as a user would (issue 26).

A new interpreter spends ~5 s of CPU importing torch, Lightning (which imports torch._dynamo, torchmetrics and
through it scipy.signal and matplotlib) and Hydra before train.py's first line: most of `make test` on 2 cores.
Here one server process per pytest worker imports those libraries once and forks a child for each command. The
child takes the command's argv, working directory and environment and runs the script or module as `__main__`,
exiting as the interpreter would (an uncaught exception: its traceback and 1; SystemExit: its code), its stdout and
stderr in files the test reads. catdog itself is imported fresh in every child. Only a command whose environment
matches the server's (but for the keys in `RUNTIME_ONLY`, which the libraries read after import) is forked; any
other runs in a new interpreter, as does every command when the server is not running.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

# what the server imports before it forks: the libraries of a training run that cost the most to import and read no
# setting of the test's environment at import time that the tests change (those that differ go to a new interpreter)
WARM_IMPORTS = ("numpy", "cv2", "torch", "pytorch_lightning", "torchmetrics", "hydra.main", "omegaconf")
# environment keys the libraries above read when a run uses them, not when they are imported. Libraries imported by
# in-process tests set all but the first three in this process, so later commands carry them: pytest (the running
# test's name), Lightning (its seed_everything; its import), torch.compile (its cache; CUBLAS_WORKSPACE_CONFIG, which
# only CUDA reads), scikit-learn's import (KMP_*: read by Intel's OpenMP when it loads; torch's CPU build uses GNU's)
RUNTIME_ONLY = frozenset(
    {
        "PYTHONUNBUFFERED",
        "HYDRA_FULL_ERROR",
        "CATDOG_DATA",
        "PYTEST_CURRENT_TEST",
        "PL_GLOBAL_SEED",
        "PL_SEED_WORKERS",
        "PYTORCH_NVML_BASED_CUDA_CHECK",
        "TORCHINDUCTOR_CACHE_DIR",
        "CUBLAS_WORKSPACE_CONFIG",
        "KMP_INIT_AT_FORK",
        "KMP_DUPLICATE_LIB_OK",
    }
)
# subprocess.run itself: tests may route subprocess.run through warm_run, which comes back here for a new interpreter
NEW_INTERPRETER = subprocess.run
# the environment the server starts with: this process's as the test session set it up (conftest), before any test
# could change it
SESSION_ENV = dict(os.environ)


def serve() -> None:
    """The server: import WARM_IMPORTS, then for each request line (JSON) fork a child, answer its pid, wait for
    it and answer its exit code; end at end of input."""
    import importlib

    for name in WARM_IMPORTS:
        importlib.import_module(name)
    # a fork copies only the calling thread: the client checks that there is no other
    answer(threads=len(os.listdir("/proc/self/task")))
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os._exit(run_child(request))
        answer(pid=pid)
        _, status = os.waitpid(pid, 0)
        answer(returncode=os.waitstatus_to_exitcode(status))


def answer(**fields) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def run_child(request: dict) -> int:
    """In the forked child: become the command (own session, so a timeout kills its children too), run it and
    return its exit code."""
    os.setsid()
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    try:
        run_command(request["args"])
        code = 0
    except SystemExit as stop:  # as the interpreter exits on one: None is 0, a message goes to stderr with 1
        code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
        if not isinstance(stop.code, int | None):
            print(stop.code, file=sys.stderr)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    return shut_down(code)


def run_command(args: list[str]) -> None:
    """Run `python ARGS` (a script or -m module) as __main__, with the argv and sys.path[0] the interpreter sets."""
    if args[0] == "-m":  # python -m module: the module's name, sys.path[0] the working directory
        sys.argv = [args[1], *args[2:]]
        sys.path[0] = os.getcwd()
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:  # python script.py: sys.path[0] the script's folder
        sys.argv = list(args)
        sys.path[0] = str(Path(args[0]).resolve().parent)
        runpy.run_path(args[0], run_name="__main__")


def shut_down(code: int) -> int:
    """What the interpreter does at exit that a program sees (wait for its threads, run its atexit functions, flush
    its output), without tearing down every module: in a forked child that touches, and so copies, the whole heap
    of torch and Lightning (1.2 s of a 2-core EPYC for each command)."""
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return code & 0xFF


class WarmPython:
    """The client: one server per process that uses it, started at the first command, stopped at exit."""

    def __init__(self) -> None:
        self.server: subprocess.Popen | None = None
        self.replies = b""
        self.lock = threading.Lock()

    def start(self) -> bool:
        """Start the server (once); False when it cannot fork safely (a thread beside the main one) or has died."""
        if self.server is None:
            self.server = subprocess.Popen(
                [sys.executable, "-u", __file__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=SESSION_ENV,
            )
            atexit.register(self.stop)
            ready = self.read(timeout=300)
            if ready is None or ready.get("threads") != 1:
                self.stop()
                return False
        return self.server is not None and self.server.poll() is None

    @staticmethod
    def serves(env: dict[str, str]) -> bool:
        """Whether a command with environment `env` may be forked from the server: the server's environment but for
        RUNTIME_ONLY keys."""
        keys = (set(env) | set(SESSION_ENV)) - RUNTIME_ONLY
        return all(env.get(k) == SESSION_ENV.get(k) for k in keys)

    def read(self, timeout: float) -> dict | None:
        """The server's next reply, or None past `timeout` seconds or at its end."""
        assert self.server is not None and self.server.stdout is not None
        fd, deadline = self.server.stdout.fileno(), time.monotonic() + timeout
        while b"\n" not in self.replies:
            left = deadline - time.monotonic()
            chunk = os.read(fd, 65536) if left > 0 and select.select([fd], [], [], left)[0] else b""
            if not chunk:
                return None
            self.replies += chunk
        line, self.replies = self.replies.split(b"\n", 1)
        return json.loads(line)

    def run(self, args: list[str], cwd: Path, env: dict[str, str], timeout: float):
        """`python ARGS` in `cwd` with `env`, forked from the server; None when the server cannot take it."""
        if not self.serves(env) or not self.lock.acquire(blocking=False):
            return None
        try:
            if not self.start():
                return None
            assert self.server is not None and self.server.stdin is not None
            with tempfile.TemporaryDirectory(prefix="warm-python-") as tmp:
                out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
                request = {"args": args, "cwd": str(cwd), "env": env, "stdout": str(out), "stderr": str(err)}
                self.server.stdin.write(json.dumps(request).encode() + b"\n")
                self.server.stdin.flush()
                started = self.read(timeout=60)
                if started is None:
                    self.stop()
                    return None
                done = self.read(timeout=timeout)
                if done is None:
                    # past the timeout: kill the command and what it started (its session), as subprocess.run would
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(started["pid"], signal.SIGKILL)
                    self.read(timeout=60)
                    raise subprocess.TimeoutExpired(
                        [sys.executable, *args], timeout, out.read_text(), err.read_text()
                    )
                read = {"errors": "replace"}
                return subprocess.CompletedProcess(
                    [sys.executable, *args], done["returncode"], out.read_text(**read), err.read_text(**read)
                )
        finally:
            self.lock.release()

    def stop(self) -> None:
        """End the server (a command it is running goes on in its own session)."""
        if self.server is not None:
            self.server.kill()
            self.server.wait()
            self.server = None


WARM = WarmPython()


def run_python(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess:
    """`python ARGS` as subprocess.run(capture_output=True, text=True) would run it: forked from the warm server
    where it can be, else in a new interpreter. CATDOG_TEST_COLD_PYTHON=1 runs every command in a new one."""
    if os.environ.get("CATDOG_TEST_COLD_PYTHON") != "1":
        done = WARM.run(args, cwd, env, timeout)
        if done is not None:
            return done
    return NEW_INTERPRETER(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def warm_run(
    real_run: Callable[..., subprocess.CompletedProcess],
) -> Callable[..., subprocess.CompletedProcess]:
    """subprocess.run for tests of code that starts its own `python` commands (the benchmarks): this project's
    scripts (`python train.py ...`) and modules (`python -m catdog.X ...`) with captured text output through
    run_python; anything else (git, the tutorial's script beside the clone, `python -c`, which the benchmarks use
    where they need a fresh interpreter) to `real_run`."""
    served = {"capture_output", "text", "cwd", "env", "timeout", "check"}
    project = Path(__file__).resolve().parents[1]

    def run(command, **kwargs):
        python = isinstance(command, list) and len(command) > 1 and command[0] == sys.executable
        script = (
            python
            and not str(command[1]).startswith("-")
            and Path(command[1]).resolve().is_relative_to(project)
        )
        plain = python and (command[1] == "-m" or script)
        if not (plain and set(kwargs) <= served and kwargs.get("capture_output") and kwargs.get("text")):
            return real_run(command, **kwargs)
        cwd, env = Path(kwargs.get("cwd") or os.getcwd()), dict(kwargs.get("env") or os.environ)
        proc = run_python(
            [str(c) for c in command[1:]], cwd=cwd, env=env, timeout=kwargs.get("timeout") or 3600
        )
        if kwargs.get("check"):
            proc.check_returncode()
        return proc

    return run


if __name__ == "__main__":
    serve()
