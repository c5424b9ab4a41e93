"""How runs share a machine and start extra processes: torch threads per parallel job, and DDP inside sweeps.

Lightning's `ddp` strategy starts ranks > 0 by re-running the command line. Inside `python train.py -m a=1,2`
that would start a whole new sweep per rank and write to the wrong dir; ddp_subprocess_command instead re-runs
just this job (its own overrides, its own run dir), which makes `-m ... trainer=ddp` work.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import torch

from catdog.compat import set_ddp_subprocess_command
from catdog.io import usable_cpus

log = logging.getLogger(__name__)
REPLACED = ("hydra.run.dir=", "hydra.job.name=", "hydra.output_subdir=", "hydra.mode=")
CONFIG_FLAGS = ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd")


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
    threads = threads_per_job(n_jobs)
    torch.set_num_threads(threads)
    log.info("%s parallel jobs: %d torch threads each", n_jobs, threads)


def ddp_subprocess_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command that starts DDP rank `local_rank` of the current Hydra job, and its working directory."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from hydra.utils import get_original_cwd, to_absolute_path

    import __main__

    hc = HydraConfig.get()
    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    if hc.mode == RunMode.MULTIRUN:  # this job's overrides, not the sweep's (plus --config-name and friends)
        argv = sys.argv[1:]
        flags = [
            a
            for i, a in enumerate(argv)
            if a.split("=", 1)[0] in CONFIG_FLAGS or (i and argv[i - 1] in CONFIG_FLAGS)
        ]
        command += [*flags, *hc.overrides.task]
    else:
        command += [a for a in sys.argv[1:] if not a.startswith(REPLACED)]
    run_dir = hc.runtime.output_dir.replace("\\", "\\\\").replace("'", "\\'")
    command += [f"hydra.run.dir='{run_dir}'"]  # quoted: sweep job dirs hold = , [ ]
    command += [
        f"hydra.job.name={hc.job.name}_ddp_rank{local_rank}",
        "hydra.output_subdir=null",
        "hydra.mode=RUN",
    ]
    return command, get_original_cwd()


def install_ddp_launch_fix() -> None:
    """Make Lightning's ddp launcher use ddp_subprocess_command (idempotent)."""
    set_ddp_subprocess_command(ddp_subprocess_command)
