"""A Hydra sweeper on Optuna's ask-and-tell API: it asks the study for `n_jobs` trials at a time, launches them as
jobs through any Hydra launcher (basic, joblib, submitit), and tells the study each job's result. Each job reaches its
trial through the study's storage (catdog/sweeps/study.py), reports its validation metric every epoch and stops early
when the pruner says so; such a job is told as PRUNED, a failed one as FAIL.

Hydra finds this class by scanning the `hydra_plugins` namespace package; the config below is the option
`hydra/sweeper=catdog_optuna` (configs/hparams_search/optuna.yaml selects it). The module imports only Hydra at
import time: Hydra imports every plugin at every start, and Optuna takes a second to import.

No `from __future__ import annotations` here: Hydra's plugin scan runs the module before it is in sys.modules, where
the dataclass below would look its string annotations up.
"""

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, read_write

log = logging.getLogger(__name__)


@dataclass
class CatdogOptunaSweeperConf:
    _target_: str = "hydra_plugins.catdog_optuna_sweeper.optuna_sweeper.CatdogOptunaSweeper"
    # an Optuna sampler with its arguments (`_target_: optuna.samplers.TPESampler`); null: Optuna's default
    sampler: Any = None
    # none | median | hyperband | successive_halving (or a pruner with `_target_`); pruner_args: its arguments
    pruner: Any = "none"
    pruner_args: dict[str, Any] = field(default_factory=dict)
    direction: Any = "minimize"
    # a database URL (sqlite:///..., postgresql://...); null: optuna.db in the sweep dir
    storage: str | None = None
    # null: "catdog" in the sweep dir's database, a generated name in a given storage
    study_name: str | None = None
    n_trials: int = 20
    n_jobs: int = 1  # trials launched at a time
    max_failure_rate: float = 0.0  # a batch with more failed jobs than this fraction stops the sweep
    params: dict[str, str] | None = None  # the search space in Hydra's sweep syntax


ConfigStore.instance().store(
    group="hydra/sweeper", name="catdog_optuna", node=CatdogOptunaSweeperConf, provider="catdog"
)


def one_direction(direction: Any) -> str:
    """`maximize` or `minimize` (a list of one is accepted: train.py returns one value)."""
    from catdog.errors import CatdogError

    values = (
        list(direction)
        if isinstance(direction, list | tuple) or OmegaConf.is_list(direction)
        else [direction]
    )
    if len(values) != 1 or str(values[0]) not in ("maximize", "minimize"):
        raise CatdogError(f"hydra.sweeper.direction={direction}: use maximize or minimize (one objective).")
    return str(values[0])


def job_dir(ret: JobReturn) -> Path:
    return Path(ret.hydra_cfg.hydra.runtime.output_dir)


def outcome(ret: JobReturn) -> tuple[Any, float | None]:
    """(trial state, value) of a finished job: PRUNED when it wrote pruned.json, FAIL without a number."""
    from optuna.trial import TrialState

    from catdog.sweeps.job_files import PRUNED_FILE

    if (job_dir(ret) / PRUNED_FILE).exists():
        return TrialState.PRUNED, None
    if ret.status != JobStatus.COMPLETED:
        return TrialState.FAIL, None
    try:
        value = float(ret.return_value)
    except (TypeError, ValueError):
        return TrialState.FAIL, None
    return (TrialState.FAIL, None) if math.isnan(value) else (TrialState.COMPLETE, value)


class CatdogOptunaSweeper(Sweeper):
    def __init__(
        self,
        sampler: Any,
        pruner: Any,
        pruner_args: dict[str, Any],
        direction: Any,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        params: dict[str, str] | None,
    ) -> None:
        self.sampler, self.pruner, self.pruner_args = sampler, pruner, dict(pruner_args or {})
        self.direction = direction
        self.storage, self.study_name = storage, study_name
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.params = dict(params or {})
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def open_study(self, sweep_dir: Path):
        import optuna

        from catdog.sweeps.study import (
            DEFAULT_STUDY,
            first_judged_epoch,
            make_pruner,
            open_storage,
            shown_url,
        )

        max_epochs = OmegaConf.select(self.config, "trainer.max_epochs", default=None)
        first_epoch = first_judged_epoch(self.config)
        study = optuna.create_study(
            storage=open_storage(self.url),
            study_name=self.study_name or (None if self.storage else DEFAULT_STUDY),
            sampler=self.sampler,
            pruner=make_pruner(self.pruner, max_epochs, self.pruner_args, first_epoch),
            direction=self.direction,
            load_if_exists=True,
        )
        log.info(
            "Study %s in %s (%s, %s, %s): %d trial(s) so far",
            study.study_name,
            shown_url(self.url),
            type(study.sampler).__name__,
            type(study.pruner).__name__,
            self.direction,
            len(study.trials),
        )
        return study

    def mask_password(self) -> None:
        """The storage URL's password masked in the sweep's config, which multirun.yaml holds and from whose hydra
        overrides Hydra composes each job's .hydra/hydra.yaml (catdog/sweeps/study.py)."""
        from catdog.sweeps.study import shown_override, shown_url

        with read_write(self.config.hydra):
            self.config.hydra.sweeper.storage = shown_url(self.config.hydra.sweeper.storage)
            self.config.hydra.overrides.hydra = [shown_override(o) for o in self.config.hydra.overrides.hydra]

    def check(self) -> None:
        from catdog.errors import CatdogError

        if self.n_jobs < 1 or self.n_trials < 0 or not 0 <= self.max_failure_rate <= 1:
            raise CatdogError(
                f"hydra.sweeper: n_jobs={self.n_jobs} must be >= 1, n_trials={self.n_trials} >= 0 and "
                f"max_failure_rate={self.max_failure_rate} in [0, 1]."
            )
        self.direction = one_direction(self.direction)

    def sweep(self, arguments: list[str]) -> None:
        """Run the search; a mistake in the sweeper's settings is one `error:` line (catdog.shell.cli)."""
        from catdog.errors import CatdogError
        from catdog.shell.cli import report_and_exit

        try:
            self.check()
            self.search(arguments)
        except CatdogError as e:
            report_and_exit(e)

    def search(self, arguments: list[str]) -> None:
        from catdog.sweeps.study import password_for_jobs, search_space, storage_url

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.url = storage_url(self.storage, sweep_dir)
        self.mask_password()
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        space, fixed = search_space([*(f"{k}={v}" for k, v in self.params.items()), *arguments])
        study = self.open_study(sweep_dir)
        with password_for_jobs(self.url):
            self.run_trials(study, space, fixed)
        self.write_results(study, sweep_dir)

    def run_trials(self, study, space: dict[str, Any], fixed: dict[str, str]) -> None:
        """Ask the study for n_trials trials, n_jobs at a time, and launch them."""
        from catdog.overrides import arch_card
        from catdog.sweeps.study import trial_overrides

        to_go = self.n_trials
        self.exhausted = False
        while to_go > 0 and not self.exhausted:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, to_go))]
            batch = []
            for trial in trials:
                for key, value in fixed.items():
                    trial.set_user_attr(key, value)
                params = [arch_card(f"{k}={v}") for k, v in trial.params.items()]
                batch.append([*params, *(f"{k}={v}" for k, v in fixed.items())])
                batch[-1] += trial_overrides(self.url, study.study_name, trial.number)
            self.run_batch(study, trials, batch)
            to_go -= len(trials)

    def run_batch(self, study, trials: list, batch: list[list[str]]) -> None:
        """Launch one batch and tell the study its outcomes; a trial whose job never returned (an error here, Ctrl-C)
        is told FAIL, so the study holds no trial RUNNING forever."""
        from optuna.trial import TrialState

        told = set()
        try:
            self.validate_batch_is_legal(batch)
            returns = self.launcher.launch(batch, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            failed = []
            for trial, ret in zip(trials, returns, strict=True):
                state, value = outcome(ret)
                self.tell(study, trial, value, state)
                told.add(trial.number)
                log.info("Trial %d (job %s): %s %s", trial.number, job_dir(ret).name, state.name, value or "")
                if state == TrialState.FAIL:
                    failed.append(ret)
        finally:
            for trial in trials:
                if trial.number not in told:
                    self.tell(study, trial, None, TrialState.FAIL)
        if len(failed) > self.max_failure_rate * len(returns):
            from catdog.errors import CatdogError

            for ret in failed:
                _ = ret.return_value  # re-raises a job's own exception, where it has one
            raise CatdogError(
                f"{len(failed)} of {len(returns)} jobs of a batch failed, more than "
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate}: see their failed.json and train.log."
            )

    def tell(self, study, trial, value: float | None, state) -> None:
        """study.tell; a sampler with a finite space (GridSampler, BruteForceSampler) that has run every point calls
        study.stop(), which Optuna allows only inside study.optimize: the trial is told all the same, and the
        sweep ends after this batch."""
        try:
            study.tell(trial, value, state=state, skip_if_finished=True)
        except RuntimeError as e:
            if "Study.stop" not in str(e):
                raise
            self.exhausted = True
            log.info("The sampler has tried every point of the search space: the sweep ends")

    def write_results(self, study, sweep_dir: Path) -> None:
        """optimization_results.yaml in the sweep dir: the study's best trial so far (of every worker)."""
        from optuna.trial import TrialState

        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            log.warning("No trial of study %s has completed: no best parameters", study.study_name)
            return
        best = study.best_trial
        results = {
            "name": "optuna",
            "study_name": study.study_name,
            "best_trial": best.number,
            "best_params": best.params,
            "best_value": best.value,
        }
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        log.info("Best value %s of trial %d: %s", best.value, best.number, best.params)
