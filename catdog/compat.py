"""The private Lightning and Hydra APIs catdog relies on, in one place: each is one small function with its own test
(tests/test_compat.py), so an upgrade that moves one fails there first, with a name to look for."""

from __future__ import annotations

from collections.abc import Callable


def check_precision_name(precision) -> None:
    """Raise ValueError unless Lightning knows this trainer.precision (its own parser, without building a
    Trainer, so a typo stops before the data is prepared)."""
    from lightning_fabric.connector import _convert_precision_to_unified_args

    _convert_precision_to_unified_args(precision)


def apply_overrides(overrides: list, cfg) -> None:
    """Apply parsed command-line overrides to a config in struct mode as hydra.compose does, with its messages
    ("Could not override 'data.x'. To append to your config use +data.x=..."), see catdog/prepare.py."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    ConfigLoaderImpl._apply_overrides_to_config(overrides, cfg)


def tensorboard_file_writer(writer):
    """The FileWriter under a SummaryWriter: HPARAMS summaries are written to it directly (see run/hparams.py)."""
    return writer._get_file_writer()


def set_ddp_subprocess_command(command: Callable) -> None:
    """Make Lightning's `ddp` launcher start ranks > 0 with `command(local_rank) -> (argv, cwd)`; Lightning calls
    the module-level `_hydra_subprocess_cmd` whenever Hydra is initialized (see run/launch.py for why)."""
    from pytorch_lightning.strategies.launchers import subprocess_script

    subprocess_script._hydra_subprocess_cmd = command


def set_ddp_rank_observer(observer: Callable) -> None:
    """Make Lightning's `ddp` launcher call `observer(child_processes)` after starting ranks > 0, instead of its own
    watcher, which SIGKILLs the launching process (a whole sweep) when one rank fails (see run/launch.py)."""
    from pytorch_lightning.strategies.launchers import subprocess_script

    subprocess_script._launch_process_observer = observer


def ddp_rank_processes(trainer) -> list:
    """The processes of ranks > 0 this process started for the trainer's `ddp` launcher (none elsewhere)."""
    return list(getattr(trainer.strategy.launcher, "procs", None) or [])


def weight_average(callback):
    """The AveragedModel inside Lightning's WeightAveraging callback (None before fitting starts); its `.module` is
    the averaged copy of the LightningModule, `.n_averaged` the number of updates (see callbacks/ema.py)."""
    return callback._average_model


def swap_weight_average(callback, pl_module) -> None:
    """Exchange the LightningModule's weights and buffers with the average, as WeightAveraging does around
    validation (callbacks/ema.py moves the swap back to a later hook)."""
    callback._swap_models(pl_module)


def on_hydra_error(handler: Callable[[Exception], None]) -> None:
    """Give `handler` each exception of a Hydra app's run (config composition included) before Hydra prints it in
    its own multi-line way: the handler exits with one line or re-raises for Hydra's message (run/config_errors.py)."""
    from hydra._internal import utils

    original = utils.run_and_report

    def run_and_report(func: Callable):
        def run():
            try:
                return func()
            except Exception as e:
                handler(e)
                raise

        return original(run)

    utils.run_and_report = run_and_report


def lightning_info_logger():
    """The logger Lightning's rank_zero_info messages go to (its tips among them): lightning_utilities' rank-zero
    module holds it, set by whichever of pytorch_lightning and lightning_fabric was imported last."""
    import pytorch_lightning  # noqa: F401 - its import points the module at pytorch_lightning's logger
    from lightning_utilities.core import rank_zero

    return rank_zero.log


def trial_of_number(study, number: int):
    """The running trial `number` of a study loaded in another process, for trial.report and should_prune: Optuna's
    public API hands out a Trial only from study.ask() in the process that asked (see sweeps/study.py)."""
    import optuna

    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return optuna.trial.Trial(study, trial_id)
