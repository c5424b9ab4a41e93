"""A real single-node SLURM cluster (Debian's slurm-wlm and munge, `make test-cluster`): a 2-job sweep through
`hydra/launcher=slurm` with `ckpt_path=auto`, one job pre-empted with `scontrol requeue` mid-run; the requeued job
resumes from its last.ckpt and both jobs finish every epoch, with a sweep summary. And an Optuna sweep with a pruner
whose trials run as SLURM jobs: one is pruned."""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import ROOT, free_port, write_class_folders
from pruned_sweep import check_pruned_sweep, pruning_overrides

pytestmark = pytest.mark.cluster
DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue")
EPOCHS = 5
# a requeued job waits cred_expire seconds before it may start again (SLURM's default is 120)
CRED_EXPIRE_S = 10


def slurm_conf(d: Path, host: str) -> str:
    """One node (this host, all its cores, half its memory), one partition, root runs everything, no accounting."""
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2
    return f"""\
ClusterName=catdogtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge.socket,cred_expire={CRED_EXPIRE_S}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
ReturnToService=2
MpiDefault=none
KillWait=10
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={mem_mb} State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def stop(pid_file: Path) -> None:
    """Stop a daemon this test started, by the pid it wrote."""
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 15)
    except (OSError, ValueError):
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def kill_job_steps(conf: Path) -> None:
    """Kill the slurmstepd processes this cluster's slurmd started (they outlive it when a job was still ending)."""
    for proc in Path("/proc").iterdir():
        try:
            started_here = (proc / "cmdline").read_bytes().startswith(b"slurmstepd") and (
                f"SLURM_CONF={conf}\0".encode() in (proc / "environ").read_bytes()
            )
        except OSError:
            continue
        if started_here:
            os.kill(int(proc.name), 9)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """munged, slurmctld and slurmd on this host, with their own key, socket, ports and state; stopped after."""
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed: `make test-cluster` installs slurm-wlm and munge (apt)"
        )
    if os.geteuid() != 0:
        pytest.skip("a single-node SLURM needs root (slurmd starts jobs as their user)")
    d = tmp_path_factory.mktemp("slurm")
    d.chmod(0o700)
    for sub in ("state", "spool"):
        (d / sub).mkdir()
    host = socket.gethostname().split(".")[0]
    (d / "slurm.conf").write_text(slurm_conf(d, host))
    env = {**os.environ, "SLURM_CONF": str(d / "slurm.conf")}
    subprocess.run(["mungekey", "--create", f"--keyfile={d}/munge.key"], check=True)
    try:
        subprocess.run(
            [
                "munged",
                "--force",
                f"--socket={d}/munge.socket",
                f"--key-file={d}/munge.key",
                f"--pid-file={d}/munged.pid",
                f"--log-file={d}/munged.log",
                f"--seed-file={d}/munged.seed",
            ],
            check=True,
        )
        subprocess.run(["slurmctld", "-f", d / "slurm.conf"], env=env, check=True)
        subprocess.run(["slurmd", "-f", d / "slurm.conf", "-N", host], env=env, check=True)
        wait_for(
            lambda: slurm_cmd(env, "sinfo", "-h", "-o", "%T").strip() == "idle", 60, "the node to be idle"
        )
        print(f"SLURM up: slurmctld and slurmd on {host}, config {d / 'slurm.conf'}")
        yield env
    finally:
        try:
            wait_for(lambda: not slurm_cmd(env, "squeue", "-h").strip(), 60, "the jobs to leave the queue")
        finally:
            for daemon in ("slurmd", "slurmctld", "munged"):
                stop(d / f"{daemon}.pid")
            kill_job_steps(d / "slurm.conf")
        print("SLURM daemons stopped")


def slurm_cmd(env: dict, *command: str) -> str:
    return subprocess.run(command, env=env, capture_output=True, text=True).stdout


def job_state(env: dict, job: str) -> dict[str, str]:
    """`scontrol show job` as a dict (JobState, Restarts, ...); empty once SLURM forgot the job."""
    out = slurm_cmd(env, "scontrol", "-o", "show", "job", job)
    return dict(re.findall(r"(\w+)=(\S*)", out))


# every job on one CPU of this node
SLURM_JOBS = [
    "hydra/launcher=slurm",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    # CPU nodes: no GPUs to ask for
    "hydra.launcher.gpus_per_node=null",
]


def test_sweep_survives_requeue(slurm, tmp_path):
    data = write_class_folders(tmp_path / "photos", per_class=40)
    sweep = tmp_path / "sweep"
    env = {
        **slurm,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    overrides = [
        *SLURM_JOBS,
        f"hydra.sweep.dir={sweep}",
        "ckpt_path=auto",
        f"data.source={data}",
        f"data.cache_dir={tmp_path}/cache",
        "data.resolution=16",
        "data.batch_size=8",
        "data.val_fraction=0.25",
        "data.progress=false",
        "model.channels=[4,8]",
        "model.hidden=[16]",
        f"trainer.max_epochs={EPOCHS}",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "~callbacks.early_stopping",
        # 2 s after each epoch: the pre-emption below lands mid-run however fast this machine trains
        "+callbacks.pause._target_=pause.PauseEachEpoch",
        "+callbacks.pause.seconds=2",
        "model.kernel=3,5",
    ]
    with open(tmp_path / "sweep.log", "w") as out:
        command = [sys.executable, str(ROOT / "train.py"), "-m", *overrides]
        launcher = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        last = sweep / "1" / "checkpoints" / "last.ckpt"
        wait_for(last.is_file, 300, f"job 1's first epoch ({last})")
        job = wait_for(
            lambda: re.search(r"^\s*(\d+_1)\s", slurm_cmd(slurm, "squeue"), re.M), 10, "job 1 in squeue"
        ).group(1)
        assert not (sweep / "1" / "metrics.json").exists(), "job 1 finished before it could be pre-empted"
        subprocess.run(["scontrol", "requeue", job], env=slurm, check=True)
        print(f"pre-empted job {job} after its first epoch: scontrol requeue {job}")
        assert launcher.wait(timeout=400) == 0, (tmp_path / "sweep.log").read_text()[-3000:]
    finally:
        if launcher.poll() is None:
            launcher.kill()
            subprocess.run(["scancel", "--name=train"], env=slurm)

    log = (sweep / "1" / "train.log").read_text()
    assert "Interrupted: saved" in log, log[-2000:]
    resumed = re.search(r"Resuming from (\S+) \(saved in epoch (\d+), step (\d+)\)", log)
    assert resumed and resumed[1] == str(last) and int(resumed[2]) >= 0 and int(resumed[3]) > 0, log[-2000:]
    assert "Resuming" not in (sweep / "0" / "train.log").read_text()
    restarts = job_state(slurm, job).get("Restarts")
    assert restarts == "1", f"SLURM counted {restarts} restarts of {job}"
    # 80 photos, a quarter for validation, batches of 8
    steps_per_epoch = math.ceil(60 / 8)
    for n in ("0", "1"):
        checkpoint = torch.load(sweep / n / "checkpoints" / "last.ckpt", weights_only=False)
        assert checkpoint["epoch"] == EPOCHS - 1
        assert checkpoint["global_step"] == EPOCHS * steps_per_epoch
        assert (sweep / n / "metrics.json").is_file()
    summary = (sweep / "summary.md").read_text()
    assert "2 jobs, 2 ok, 0 failed" in summary, summary
    print(
        f"job {job} was requeued (SLURM Restarts={restarts}), resumed from {resumed[1]} saved in epoch "
        f"{resumed[2]} at step {resumed[3]}, and finished all {EPOCHS} epochs; job 0 ran straight through.\n"
        f"sweep summary:\n{summary}"
    )


def test_optuna_sweep_with_a_pruner_prunes_a_slurm_job(slurm, tmp_path):
    """The two trials of tests/pruned_sweep.py as two SLURM jobs: each reaches its trial through the study's
    database (SQLite in the sweep dir, on this node's disk) and reports every epoch; the 3-epoch one is pruned."""
    data = write_class_folders(tmp_path / "photos")
    command = [sys.executable, str(ROOT / "train.py"), "-m", *pruning_overrides(data, tmp_path), *SLURM_JOBS]
    proc = subprocess.run(command, cwd=tmp_path, env=slurm, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sweep = tmp_path / "sweep"
    assert len(list((sweep / ".submitit").glob("*/*_submitted.pkl"))) == 2  # the trials ran as SLURM jobs
    check_pruned_sweep(sweep)
    print(f"pruned SLURM job: {(sweep / 'summary.md').read_text()}")
