"""catdog's Optuna sweeper (hydra_plugins/catdog_optuna_sweeper, catdog/sweeps/study.py): the search space from Hydra's
sweep syntax, pruners by name, the trial a job reaches through the storage, and pruning in real sweeps."""

from __future__ import annotations

import json
import os

import pytest
import torch
from helpers import run_train, tiny_overrides, train_in_process
from omegaconf import OmegaConf
from pruned_sweep import check_pruned_sweep, pruning_overrides

from catdog.errors import CatdogError
from catdog.sweeps import study as st

optuna = pytest.importorskip("optuna")
D = optuna.distributions


def test_hydra_sweep_syntax_becomes_optuna_distributions():
    space, fixed = st.search_space(
        [
            "lr=tag(log, interval(0.0001, 0.01))",
            "dropout=interval(0.0, 0.5)",
            'channels=choice("[16,32,64]", "[32,64]")',
            "kernel=3,5",
            "width=range(16, 64, 16)",
            "scale=range(0.1, 0.35, 0.1)",
            "data.source=/x",
            "kernel=7",  # a later override wins: this fixes kernel
        ]
    )
    scale = space.pop("scale")
    assert (scale.low, scale.high, scale.step) == (0.1, pytest.approx(0.3), 0.1)
    assert space == {
        "lr": D.FloatDistribution(0.0001, 0.01, log=True),
        "dropout": D.FloatDistribution(0.0, 0.5),
        "channels": D.CategoricalDistribution(["[16,32,64]", "[32,64]"]),
        "width": D.IntDistribution(16, 48, step=16),  # Hydra's range stops before 64
    }
    assert fixed == {"data.source": "/x", "kernel": "7"}


def test_pruners_by_name():
    assert isinstance(st.make_pruner("none"), optuna.pruners.NopPruner)
    median = st.make_pruner("median", 10, {"n_startup_trials": 2})
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert (median._n_startup_trials, median._n_warmup_steps) == (2, 2)
    hyperband = st.make_pruner("hyperband", 12)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner) and hyperband._max_resource == 12
    assert isinstance(st.make_pruner("successive_halving"), optuna.pruners.SuccessiveHalvingPruner)
    with pytest.raises(
        CatdogError, match="hydra.sweeper.pruner=medain is not a pruner: use one of none, median"
    ):
        st.make_pruner("medain")


@pytest.mark.parametrize(
    "overrides,first",
    [
        (["experiment=fast", "trainer.max_epochs=9"], 3),  # one-cycle, peak at 0.25 x 9 = 2.25 epochs
        (["experiment=fast", "trainer.max_epochs=12"], 4),  # at 3.0: epoch 3 ends at the peak
        (["experiment=fast", "model/scheduler=cosine"], 1),  # no warm-up
        ([], 1),  # no scheduler
    ],
)
def test_pruners_judge_first_after_the_warm_up(overrides, first):
    from helpers import ROOT
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["data.source=x", *overrides])
    assert st.first_judged_epoch(cfg) == first
    halving = st.make_pruner("successive_halving", 9, None, first)
    assert halving._min_resource == first and halving._reduction_factor == 3
    assert st.make_pruner("hyperband", 9, None, first)._min_resource == first
    assert st.make_pruner("median", 9, None, first)._n_warmup_steps == max(2, first)
    # the command line's pruner_args win
    assert st.make_pruner("successive_halving", 9, {"min_resource": 1}, first)._min_resource == 1


@pytest.mark.parametrize(
    "value",
    ["postgresql://u:p'a\\ss@host/db?x=1,2", "sqlite:////tmp/a b/optuna.db", "ends\\", "x${y}", "it's\\'"],
)
def test_a_quoted_override_value_reaches_the_job_unchanged(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from catdog.compat import apply_overrides

    cfg = OmegaConf.create({"env": {}})
    apply_overrides(OverridesParser.create().parse_overrides([f"++env.X={st.hydra_quote(value)}"]), cfg)
    assert cfg.env.X == value  # read as the job reads it: interpolations resolved


@pytest.mark.parametrize(
    "url, shown",
    [
        (
            "postgresql://u:pw%40x@db:5432/optuna?sslmode=require",
            "postgresql://u:***@db:5432/optuna?sslmode=require",
        ),
        ("postgresql://u@db/optuna", "postgresql://u@db/optuna"),  # the password in PGPASSWORD or ~/.pgpass
        ("sqlite:////tmp/a b/optuna.db", "sqlite:////tmp/a b/optuna.db"),
        (None, None),
    ],
)
def test_a_storage_url_is_shown_without_its_password(url, shown):
    assert st.shown_url(url) == shown


def test_a_storage_override_is_shown_without_its_password():
    assert st.shown_override("hydra.sweeper.storage=postgresql://u:pw@db/optuna") == (
        "hydra.sweeper.storage='postgresql://u:***@db/optuna'"
    )
    assert st.shown_override("++hydra.sweeper.storage='postgresql://u:it\\'s@db/optuna'") == (
        "++hydra.sweeper.storage='postgresql://u:***@db/optuna'"
    )
    # no URL: where its password is cannot be told, so all of it is hidden
    assert st.shown_override("hydra.sweeper.storage=pw@db") == "hydra.sweeper.storage=***"
    for kept in ("hydra.sweeper.storage=null", "model.kernel=3", "-m", "train.py"):
        assert st.shown_override(kept) == kept


def test_a_job_is_handed_the_storage_url_masked_and_puts_the_password_back(monkeypatch):
    """The job's overrides (its .hydra/ files, the launcher's log) hold the mask; the password reaches the job in
    the environment it inherits from the sweeper, during the sweep only."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from catdog.compat import apply_overrides

    url = "postgresql://u:p%40ss@db/optuna"
    overrides = st.trial_overrides(url, "s", 3)
    assert not any("p%40ss" in o for o in overrides)
    cfg = OmegaConf.create({"hydra": {"job": {"env_set": {}}, "sweeper": {"storage": url}}})
    apply_overrides(OverridesParser.create().parse_overrides(overrides), cfg)
    assert cfg.hydra.sweeper.storage == "postgresql://u:***@db/optuna"  # also where a config file set it
    monkeypatch.delenv(st.PASSWORD_ENV, raising=False)
    for name, value in cfg.hydra.job.env_set.items():
        monkeypatch.setenv(name, str(value))
    with st.password_for_jobs(url):
        assert os.environ[st.PASSWORD_ENV] == "p@ss" and st.job_storage_url() == url
    assert st.PASSWORD_ENV not in os.environ and st.job_storage_url() == "postgresql://u:***@db/optuna"
    sqlite = "sqlite:////tmp/optuna.db"
    assert st.trial_overrides(sqlite, "s", 3)[0].endswith(f"{st.STORAGE_ENV}='{sqlite}'")
    with st.password_for_jobs(sqlite):
        assert st.PASSWORD_ENV not in os.environ


def asked_trial(tmp_path, completed: dict[int, float] | None):
    """A study in SQLite with one completed trial of these intermediate values (if any), and a new running trial."""
    url = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    if completed:
        done = study.ask()
        for step, value in completed.items():
            done.report(value, step)
        study.tell(done, max(completed.values()))
    return url, study, study.ask()


@pytest.mark.slow
def test_a_job_reports_every_epoch_and_stops_when_its_trial_is_pruned(image_folder, tmp_path, monkeypatch):
    # every epoch of the finished trial scored above any accuracy: the median pruner stops the job at its first
    # judged epoch (2: warmup leaves epoch 1 alone)
    url, study, trial = asked_trial(tmp_path, {1: 1.01, 2: 1.01, 3: 1.01, 4: 1.01})
    for name, value in ((st.STORAGE_ENV, url), (st.STUDY_ENV, "s"), (st.TRIAL_ENV, str(trial.number))):
        monkeypatch.setenv(name, value)
    run = tmp_path / "run"
    train_in_process(
        *tiny_overrides(image_folder, tmp_path),
        "hparams_search=optuna",
        "hydra.sweeper.pruner=median",
        "+hydra.sweeper.pruner_args.n_startup_trials=1",
        "trainer.max_epochs=4",
        "data.test_fraction=0.25",
        "test=true",
    )
    frozen = study.trials[trial.number]
    assert sorted(frozen.intermediate_values) == [1, 2] and frozen.user_attrs["run_dir"] == str(run)
    assert json.loads((run / "pruned.json").read_text()) == {"epochs": 2, "metric": "val/acc"}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val/acc"] == pytest.approx(frozen.intermediate_values[2])
    assert not any(k.startswith("test/") for k in metrics)  # a pruned trial is not tested: it is no result
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 1  # 0-based: two epochs trained and kept


@pytest.mark.slow
def test_a_job_without_a_validation_metric_to_report_says_so(image_folder, tmp_path, monkeypatch):
    url, _, trial = asked_trial(tmp_path, None)
    for name, value in ((st.STORAGE_ENV, url), (st.STUDY_ENV, "s"), (st.TRIAL_ENV, str(trial.number))):
        monkeypatch.setenv(name, value)
    with pytest.raises(CatdogError, match="optimized_metric=test/acc is not logged at validation"):
        train_in_process(
            *tiny_overrides(image_folder, tmp_path), "hparams_search=optuna", "optimized_metric=test/acc"
        )


@pytest.mark.slow
def test_joblib_sweep_with_a_pruner_marks_the_pruned_job_and_keeps_its_files(image_folder, tmp_path):
    """Two trials in two joblib worker processes, one of them pruned (tests/pruned_sweep.py)."""
    proc = run_train(
        "-m", *pruning_overrides(image_folder, tmp_path), "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"
    )
    check_pruned_sweep(tmp_path / "sweep")
    assert "error:" not in proc.stderr  # pruned is not failed: the sweep exits 0


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "hydra.sweeper.pruner=medain",
            "hydra.sweeper.pruner=medain is not a pruner: use one of none, median",
        ),
        ("hydra.sweeper.n_jobs=0", "hydra.sweeper: n_jobs=0 must be >= 1"),
        ("hydra.sweeper.direction=up", "hydra.sweeper.direction=up: use maximize or minimize"),
    ],
)
def test_a_wrong_sweeper_setting_is_one_line(tmp_path, override, message):
    proc = run_train("hparams_search=optuna", override, f"hydra.sweep.dir={tmp_path}/sweep", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith(f"error: {message}"), proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
