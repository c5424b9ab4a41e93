"""How runs share a machine and start extra processes: torch threads per parallel job, and DDP inside sweeps.

Lightning's `ddp` strategy starts ranks > 0 by re-running the command line. Inside `python train.py -m a=1,2`
that would start a whole new sweep per rank and write to the wrong dir; ddp_subprocess_command instead re-runs
just this job (its own overrides, its own run dir), which makes `-m ... trainer=ddp` work. Between the jobs of a
sweep (one process runs them one after another) end_ddp_job removes what a job's DDP left behind: the process
group, its ranks > 0 and the MASTER_PORT/LOCAL_RANK/... variables (with LOCAL_RANK set, Lightning would start no
ranks for the next job and reuse the old group). A rank > 0 that dies fails its job, not the sweep.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from catdog.compat import ddp_rank_processes, set_ddp_rank_observer, set_ddp_subprocess_command
from catdog.io import usable_cpus

log = logging.getLogger(__name__)
REPLACED = ("hydra.run.dir=", "hydra.job.name=", "hydra.output_subdir=", "hydra.mode=")
CONFIG_FLAGS = ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd")
ENTRY_ENV = "CATDOG_ENTRY_COMMAND"
# set by Lightning's ddp launcher in the launching process and inherited by the ranks it starts
DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
# seconds the ranks > 0 of a finished job get to exit on their own; after a failure they are killed sooner
RANKS_EXIT_S, FAILED_RANKS_EXIT_S = 120, 10


def threads_per_job(n_jobs: int, cpus: int | None = None) -> int:
    """Torch threads for one of n_jobs jobs running at once (negative n_jobs: ~one job per core)."""
    cpus = cpus or usable_cpus()
    return max(1, cpus // n_jobs) if n_jobs > 0 else 1


def share_cores() -> None:
    """In a sweep with a parallel launcher (hydra.launcher.n_jobs), give each job its share of the cores."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    n_jobs = HydraConfig.get().launcher.get("n_jobs")
    if n_jobs is None:
        return
    import torch

    threads = threads_per_job(n_jobs)
    torch.set_num_threads(threads)
    log.info("%s parallel jobs: %d torch threads each", n_jobs, threads)


def program() -> list[str]:
    """The interpreter and script (or -m module) this process runs."""
    import __main__

    if __main__.__spec__ is None:
        return [sys.executable, os.path.abspath(sys.argv[0])]
    return [sys.executable, "-m", __main__.__spec__.name]


def remember_entry_command() -> None:
    """Called by train.py: the joblib launcher runs jobs in worker processes whose own command line is joblib's, so
    their DDP ranks start the program and --config-* flags kept here (the workers inherit the variable)."""
    argv = sys.argv[1:]
    flags = [
        a
        for i, a in enumerate(argv)
        if a.split("=", 1)[0] in CONFIG_FLAGS or (i and argv[i - 1] in CONFIG_FLAGS)
    ]
    os.environ[ENTRY_ENV] = json.dumps([*program(), *flags])


def ddp_subprocess_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command that starts DDP rank `local_rank` of the current Hydra job, and its working directory."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from hydra.utils import get_original_cwd

    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:  # this job's overrides, not the sweep's
        command = [*json.loads(os.environ.get(ENTRY_ENV) or json.dumps(program())), *hc.overrides.task]
    else:
        command = [*program(), *(a for a in sys.argv[1:] if not a.startswith(REPLACED))]
    run_dir = hc.runtime.output_dir.replace("\\", "\\\\").replace("'", "\\'")
    command += [f"hydra.run.dir='{run_dir}'"]  # quoted: sweep job dirs hold = , [ ]
    command += [
        f"hydra.job.name={hc.job.name}_ddp_rank{local_rank}",
        "hydra.output_subdir=null",
        "hydra.mode=RUN",
    ]
    return command, get_original_cwd()


def watch_ranks(children: list[subprocess.Popen]) -> None:
    """Log each rank > 0 that ends with an error. Rank 0 then fails in its next collective (gloo: "Connection
    closed by peer"; NCCL at its timeout), so the job ends with a recorded failure and the sweep goes on."""

    def watch() -> None:
        running = dict(enumerate(children, 1))
        while running:
            for rank, proc in list(running.items()):
                if proc.poll() is not None:
                    del running[rank]
                    if proc.returncode:
                        log.error("DDP rank %d (pid %d) ended with code %d", rank, proc.pid, proc.returncode)
            time.sleep(0.5)

    threading.Thread(target=watch, name="ddp-rank-watcher", daemon=True).start()


def ddp_env() -> dict[str, str | None]:
    """The DDP variables as they are before a job, for end_ddp_job to restore."""
    return {k: os.environ.get(k) for k in DDP_ENV}


def end_ddp_job(trainer, env_before: dict[str, str | None], failed: bool) -> None:
    """Leave nothing of a job's DDP for the next job of a sweep: wait for its ranks > 0 (kill them after
    RANKS_EXIT_S, or FAILED_RANKS_EXIT_S after a failure), destroy the process group, restore the variables."""
    import torch

    children = ddp_rank_processes(trainer) if trainer is not None else []
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed and failed:  # ranks waiting in a collective for this one are released by the group's end
        torch.distributed.destroy_process_group()
    for proc in children:
        try:
            proc.wait(FAILED_RANKS_EXIT_S if failed else RANKS_EXIT_S)
        except subprocess.TimeoutExpired:
            log.warning("DDP rank (pid %d) did not exit: killed", proc.pid)
            proc.kill()
            proc.wait()
    if distributed and not failed:
        torch.distributed.destroy_process_group()
    for key, value in env_before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def install_ddp_launch_fix() -> None:
    """Make Lightning's ddp launcher use ddp_subprocess_command and watch_ranks (idempotent)."""
    set_ddp_subprocess_command(ddp_subprocess_command)
    set_ddp_rank_observer(watch_ranks)
