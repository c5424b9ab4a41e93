"""One Optuna study in a database, shared by sweeps started at the same moment and continued by a later one: in
SQLite, and on a real PostgreSQL server (tests/postgres.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, tiny_overrides
from postgres import PASSWORD, new_database
from warm_python import run_python

optuna = pytest.importorskip("optuna")


def optuna_sweep(source: Path, out: Path, storage: str, n_trials: int, seed: int) -> list[str]:
    """The command of an Optuna sweep of tiny runs under out/, in the study `shared` of `storage`; each worker
    needs its own sampler seed (the same seed would sample the same first points in every worker)."""
    overrides = [
        o for o in tiny_overrides(source, out) if not o.startswith(("hydra.run.dir", "data.cache_dir"))
    ]
    return [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "hparams_search=optuna",
        *overrides,
        f"data.cache_dir={out.parent}/cache",
        f"hydra.sweep.dir={out}/sweep",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=shared",
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.sampler.seed={seed}",
        "hydra.sweeper.sampler.n_startup_trials=2",
    ]


def learning_rates(sweep: Path) -> set[float]:
    """The model.optimizer.lr of every trial a sweep ran, from its jobs' overrides."""
    from omegaconf import OmegaConf

    rates = set()
    for overrides in sweep.glob("*/.hydra/overrides.yaml"):
        (lr,) = [o.split("=", 1)[1] for o in OmegaConf.load(overrides) if o.startswith("model.optimizer.lr=")]
        rates.add(float(lr))
    return rates


@pytest.mark.slow
def test_two_workers_share_one_study_and_a_later_sweep_continues_it(image_folder, tmp_path, storage):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    workers = [
        subprocess.Popen(
            optuna_sweep(image_folder, tmp_path / name, storage, 2, seed),
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed, name in enumerate(("a", "b"))
    ]
    for worker in workers:
        output = worker.communicate(timeout=600)[0]
        assert worker.returncode == 0, output[-3000:]

    study = optuna.load_study(study_name="shared", storage=storage)
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 4
    # both workers' trials are in the study, each trial ran once
    ran = learning_rates(tmp_path / "a" / "sweep") | learning_rates(tmp_path / "b" / "sweep")
    assert len(ran) == 4 and {t.params["model.optimizer.lr"] for t in trials} == ran

    later = run_python(
        optuna_sweep(image_folder, tmp_path / "c", storage, 1, 2)[1:], cwd=tmp_path, env=env, timeout=600
    )
    assert later.returncode == 0, later.stderr[-3000:]
    study = optuna.load_study(study_name="shared", storage=storage)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    assert learning_rates(tmp_path / "c" / "sweep") == {study.trials[4].params["model.optimizer.lr"]}


def _open_storage(url: str, start) -> None:
    from catdog.sweeps.study import open_storage

    start.wait()
    open_storage(url)


def test_workers_creating_one_study_database_at_once_all_succeed(storage):
    """Four processes create the tables of a fresh study database at the same moment (optuna alone lets some of
    them fail)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(4)
    workers = [ctx.Process(target=_open_storage, args=(storage, start)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert optuna.storages.RDBStorage(storage).get_all_studies() == []


def test_a_postgresql_password_can_stay_out_of_the_storage_url(postgres, monkeypatch):
    """README: without a password in the storage URL the driver takes PGPASSWORD (libpq's variable), and without
    either the server refuses."""
    from sqlalchemy.exc import OperationalError

    from catdog.sweeps.study import open_storage

    url = new_database(postgres).replace(f":{PASSWORD}@", "@")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    with pytest.raises(OperationalError, match="password authentication failed|no password supplied"):
        open_storage(url, attempts=1)
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    optuna.create_study(study_name="s", storage=open_storage(url))
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["s"]


@pytest.mark.slow
def test_the_storage_password_stays_out_of_the_console_and_the_sweep_dir(image_folder, tmp_path, postgres):
    """hydra.sweeper.storage=postgresql://user:password@...: the jobs (in a joblib worker process) reach the study,
    and neither the sweep's console nor any file in its dir holds the password."""
    url = new_database(postgres)
    command = optuna_sweep(image_folder, tmp_path / "a", url, 1, 0)
    command += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=1", "hydra.sweeper.pruner=median"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PGPASSWORD", None)
    proc = run_python(command[1:], cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = optuna.load_study(study_name="shared", storage=url).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and "run_dir" in trial.user_attrs
    assert "Study shared in postgresql://catdog:***@" in proc.stdout + proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr
    files = [p for p in (tmp_path / "a" / "sweep").rglob("*") if p.is_file()]
    assert len(files) > 10
    assert [p for p in files if PASSWORD.encode() in p.read_bytes()] == []
