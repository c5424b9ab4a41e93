"""The Optuna side of `hparams_search=optuna` (the sweeper is hydra_plugins/catdog_optuna_sweeper): the search space
from Hydra's sweep syntax, pruners by name, the study's database, and how a job finds its trial.

A job may run in another process (joblib) or on another machine (SLURM), so the sweeper hands it the study's storage
URL, study name and trial number as environment variables through `hydra.job.env_set` (Hydra sets them around the
job's task function, and a DDP rank started by the job inherits them); the job reaches its trial through the storage.

A password in the storage URL stays out of every log line and file of the sweep: Hydra writes a job's overrides and
its hydra.sweeper config into the job's .hydra/ files and logs the overrides, so they hold the URL as `shown_url`
masks it, and the password reaches the jobs in the sweeper's own environment (PASSWORD_ENV), which every job
inherits: a joblib worker process, a SLURM job (sbatch exports the submitting environment), a DDP rank.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from catdog.errors import CatdogError
from catdog.overrides import override_key

log = logging.getLogger(__name__)
TRIAL_ENV, STUDY_ENV, STORAGE_ENV = "CATDOG_OPTUNA_TRIAL", "CATDOG_OPTUNA_STUDY", "CATDOG_OPTUNA_STORAGE"
PASSWORD_ENV = "CATDOG_OPTUNA_PASSWORD"
STORAGE_KEY = "hydra.sweeper.storage"
PRUNERS = ("none", "median", "hyperband", "successive_halving")
# the study of a sweep without hydra.sweeper.storage: a SQLite file in the sweep dir (optuna-dashboard opens it)
SWEEP_DB = "optuna.db"
DEFAULT_STUDY = "catdog"
# seconds a SQLite writer waits for another one's lock (parallel jobs report each epoch; SQLite's default is 5)
SQLITE_TIMEOUT_S = 60


def distribution(override) -> Any:
    """The Optuna distribution of one parsed Hydra override (`interval`, `tag(log, interval)`, `range`, `choice`,
    `a,b`), or its value as a string when it sweeps nothing. Hydra's `range` excludes its stop, so does this."""
    from hydra.core.override_parser.types import IntervalSweep, RangeSweep, Transformer
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if isinstance(value, IntervalSweep):
        return FloatDistribution(value.start, value.end, log="log" in value.tags)  # type: ignore[arg-type]  # both ends set
    values = list(override.sweep_iterator(transformer=Transformer.encode))
    if isinstance(value, RangeSweep) and not value.shuffle and len(values) > 1:
        if all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
            return IntDistribution(values[0], values[-1], step=value.step)  # type: ignore[arg-type]  # ints, checked above
        last = round(value.start + value.step * (len(values) - 1), 12)  # type: ignore[operator]  # sums of 0.1 miss 0.3 by 1e-17
        return FloatDistribution(value.start, last, step=value.step)  # type: ignore[arg-type]  # a range has a start
    return CategoricalDistribution(values)


def search_space(arguments: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """(name -> distribution, name -> fixed value) of `key=value` overrides; a later override of a key wins, so a
    command-line `model.optimizer.lr=0.01` fixes a parameter of hydra.sweeper.params."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    space: dict[str, Any] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(arguments):
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        value = distribution(override)
        (fixed if isinstance(value, str) else space)[key] = value
    return space, fixed


def first_judged_epoch(cfg: Any) -> int:
    """The first epoch a pruner judges by default: the first to end after the learning rate's warm-up (one-cycle
    climbs for `pct_start` of trainer.max_epochs), else 1. Inside the warm-up trials rank by how far their rate has
    climbed, not by where it takes them: rungs at epochs 1 and 2 of a 9-epoch one-cycle search (peak at 2.25) stopped
    the best trial on 2 of 3 seeds (RESULTS.md, pruning)."""
    from omegaconf import OmegaConf

    epochs = OmegaConf.select(cfg, "trainer.max_epochs", default=None)
    scheduler = OmegaConf.select(cfg, "model.scheduler", default=None)
    if not epochs or not scheduler or not str(scheduler.get("_target_", "")).endswith("OneCycleLR"):
        return 1
    return int(scheduler.get("pct_start", 0.3) * epochs) + 1  # torch's default pct_start is 0.3


def make_pruner(name: Any, max_epochs: int | None = None, args: dict | None = None, first_epoch: int = 1):
    """The Optuna pruner `hydra.sweeper.pruner` names (a pruner object passes through), with `pruner_args` as its
    keyword arguments. Each job reports once per epoch, so a step is an epoch; Hyperband's largest budget is
    trainer.max_epochs, and no pruner judges before `first_epoch` (`first_judged_epoch`) unless its arguments say."""
    import optuna
    from omegaconf import DictConfig

    if isinstance(name, optuna.pruners.BasePruner):
        return name
    if isinstance(name, DictConfig) and "_target_" in name:  # a job reads the sweeper's config uninstantiated
        from hydra.utils import instantiate

        return instantiate(name)
    args = dict(args or {})
    if name in (None, "none"):
        return optuna.pruners.NopPruner()
    if name == "median":
        # 4 finished trials before it compares; steps are epochs trained (from 1), judged from epoch 2 at the
        # earliest (curves cross early)
        warmup = max(2, first_epoch)
        return optuna.pruners.MedianPruner(**{"n_startup_trials": 4, "n_warmup_steps": warmup, **args})
    rungs = {
        "min_resource": first_epoch,
        "reduction_factor": 3,
    }  # the first rung and the share kept (a third)
    if name == "hyperband":
        budget = {"max_resource": max_epochs} if max_epochs else {}
        return optuna.pruners.HyperbandPruner(**{**rungs, **budget, **args})
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(**{**rungs, **args})
    raise CatdogError(
        f"hydra.sweeper.pruner={name} is not a pruner: use one of {', '.join(PRUNERS)} (README: Pruning)."
    )


def storage_url(storage: str | None, sweep_dir: Path) -> str:
    """hydra.sweeper.storage, else a SQLite file in the sweep dir (so jobs in other processes reach the study)."""
    return str(storage) if storage else f"sqlite:///{Path(sweep_dir).absolute() / SWEEP_DB}"


def shown_url(url: str | None) -> str | None:
    """`url` as a log line or a file may show it: its password masked (postgresql://user:***@host/db); a URL
    without one unchanged, None as None."""
    if url is None:
        return None
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


def shown_override(text: str) -> str:
    """A command-line argument as a log line or a file may show it: the URL of a hydra.sweeper.storage override
    through `shown_url` (hidden whole where it is no URL), any other argument unchanged."""
    key, sep, _ = text.partition("=")
    if not sep or override_key(key) != STORAGE_KEY:
        return text
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from sqlalchemy.exc import ArgumentError

    value = OverridesParser.create().parse_override(text).value()
    if not isinstance(value, str):
        return text
    try:
        return f"{key}={hydra_quote(str(shown_url(value)))}"
    except ArgumentError:
        return f"{key}=***"


@contextmanager
def password_for_jobs(url: str) -> Iterator[None]:
    """The password of `url` (if any) in this process's environment, which the jobs launched meanwhile inherit."""
    from sqlalchemy.engine import make_url

    password, before = make_url(url).password, os.environ.get(PASSWORD_ENV)
    if password is None:
        yield
        return
    os.environ[PASSWORD_ENV] = str(password)
    try:
        yield
    finally:
        if before is None:
            del os.environ[PASSWORD_ENV]
        else:
            os.environ[PASSWORD_ENV] = before


def job_storage_url() -> str:
    """The storage URL of this job's trial: the URL it was handed, with the password the sweeper's environment
    holds (PASSWORD_ENV) in place of the mask."""
    url, password = os.environ[STORAGE_ENV], os.environ.get(PASSWORD_ENV)
    if password is None:
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).set(password=password).render_as_string(hide_password=False)


def open_storage(url: str, attempts: int = 10):
    """The study database, its tables created. Workers started at the same moment all try to create them and the
    losers may fail (a unique-constraint error on the schema version): retry after a random pause, by when the
    first worker has created them. SQLite writers wait SQLITE_TIMEOUT_S for each other's locks."""
    from optuna.storages import RDBStorage
    from sqlalchemy.exc import SQLAlchemyError

    engine = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else None
    for attempt in range(attempts):
        try:
            return RDBStorage(url, engine_kwargs=engine)
        except SQLAlchemyError:
            if attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.1, 1.0))
    raise AssertionError("unreachable")


def hydra_quote(value: str) -> str:
    """`value` as a quoted Hydra override value that Hydra reads back unchanged: quotes escaped, the backslashes
    before a quote doubled (Hydra halves them), `${` escaped (OmegaConf would read an interpolation)."""
    value = value.replace("${", "\\${")
    value = re.sub(r"(\\+)(?='|$)", r"\1\1", value)
    return "'" + value.replace("'", "\\'") + "'"


def trial_overrides(url: str, study_name: str, number: int) -> list[str]:
    """The overrides that tell a job its trial, with `url`'s password masked (see the module's docstring); a URL with
    one also replaces the job's hydra.sweeper.storage, which a config file may have set."""
    env = "++hydra.job.env_set."  # ++: add the key, or replace it
    shown = str(shown_url(url))
    return [
        f"{env}{STORAGE_ENV}={hydra_quote(shown)}",
        f"{env}{STUDY_ENV}={hydra_quote(study_name)}",
        f"{env}{TRIAL_ENV}={number}",
        *([f"++{STORAGE_KEY}={hydra_quote(shown)}"] if shown != url else []),
    ]


def job_trial(pruner, run_dir: str | None = None) -> Any:
    """This job's trial in its study (None outside catdog's Optuna sweeper), with the sweep's pruner; the run dir
    becomes the trial's user attribute `run_dir` (optuna-dashboard shows it)."""
    import optuna

    from catdog.compat import trial_of_number

    if TRIAL_ENV not in os.environ:
        return None
    storage = open_storage(job_storage_url())
    study = optuna.load_study(study_name=os.environ[STUDY_ENV], storage=storage, pruner=pruner)
    trial = trial_of_number(study, int(os.environ[TRIAL_ENV]))
    if run_dir:
        trial.set_user_attr("run_dir", str(run_dir))
    return trial


def sweep_pruner(cfg: Any) -> Any:
    """The pruner of the running sweep's hydra.sweeper config (NopPruner outside one), for the job config `cfg`."""
    from hydra.core.hydra_config import HydraConfig

    sweeper = HydraConfig.get().sweeper if HydraConfig.initialized() else {}
    max_epochs = cfg.trainer.get("max_epochs")
    return make_pruner(sweeper.get("pruner"), max_epochs, sweeper.get("pruner_args"), first_judged_epoch(cfg))
