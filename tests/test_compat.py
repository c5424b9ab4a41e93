"""Each private Lightning or Hydra API that catdog.compat wraps still exists and behaves as catdog relies on."""

from __future__ import annotations

import inspect
import logging

import pytest

from catdog import compat


def test_lightning_parses_precision_names():
    compat.check_precision_name("bf16-mixed")
    compat.check_precision_name("32-true")
    with pytest.raises(ValueError):
        compat.check_precision_name("bf17-mixed")


def test_hydra_applies_parsed_overrides_to_a_struct_config():
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import ConfigCompositionException
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"data": {"resolution": 50, "source": "x"}})
    OmegaConf.set_struct(cfg, True)
    parse = OverridesParser.create().parse_overrides
    compat.apply_overrides(parse(["data.resolution=64", "data.source='a b'"]), cfg)
    assert cfg.data == {"resolution": 64, "source": "a b"}
    with pytest.raises(ConfigCompositionException, match=r"Could not override 'data.resolutoin'"):
        compat.apply_overrides(parse(["data.resolutoin=32"]), cfg)


def test_the_tensorboard_file_writer_takes_raw_summaries(tmp_path):
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    writer = SummaryWriter(str(tmp_path))
    for summary in hparams({"lr": 0.1}, {"val/acc": 0.0}):
        compat.tensorboard_file_writer(writer).add_summary(summary)
    writer.close()
    assert any(p.name.startswith("events.out.tfevents") and p.stat().st_size > 0 for p in tmp_path.iterdir())


def test_lightning_starts_ddp_ranks_through_the_replaceable_command(monkeypatch):
    from pytorch_lightning.strategies.launchers import subprocess_script

    # Lightning looks the function up by this module-level name when it starts ranks under Hydra
    assert "_hydra_subprocess_cmd(" in inspect.getsource(subprocess_script._SubprocessScriptLauncher)
    monkeypatch.setattr(subprocess_script, "_hydra_subprocess_cmd", subprocess_script._hydra_subprocess_cmd)

    def command(local_rank):
        return ["echo", str(local_rank)], "."

    compat.set_ddp_subprocess_command(command)
    assert subprocess_script._hydra_subprocess_cmd is command


def test_lightning_watches_ddp_ranks_through_the_replaceable_observer(monkeypatch):
    from pytorch_lightning.strategies.launchers import subprocess_script

    # Lightning calls the observer by this module-level name right after starting ranks > 0, keeping them in .procs
    source = inspect.getsource(subprocess_script._SubprocessScriptLauncher)
    assert "_launch_process_observer(self.procs)" in source and "self.procs.append(" in source
    monkeypatch.setattr(
        subprocess_script, "_launch_process_observer", subprocess_script._launch_process_observer
    )

    def observer(children):
        pass

    compat.set_ddp_rank_observer(observer)
    assert subprocess_script._launch_process_observer is observer


def test_the_ddp_rank_processes_of_a_trainer_are_its_launchers_procs():
    import pytorch_lightning as pl

    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    assert compat.ddp_rank_processes(trainer) == [] and trainer.strategy.launcher.procs == []
    trainer.strategy.launcher.procs.append("rank 1")
    assert compat.ddp_rank_processes(trainer) == ["rank 1"]
    assert compat.ddp_rank_processes(pl.Trainer(accelerator="cpu", devices=1, logger=False)) == []


def test_weight_averaging_keeps_its_average_and_swaps_it_in():
    import torch
    from pytorch_lightning.callbacks import WeightAveraging

    from catdog.models.classifier import ImageClassifier

    model = ImageClassifier(1, 8, **{"channels": [2], "kernel": 3, "hidden": [4]})
    callback = WeightAveraging()
    assert compat.weight_average(callback) is None
    callback.setup(None, model, "fit")
    average = compat.weight_average(callback)
    assert int(average.n_averaged) == 0
    old = model.net[1].weight.detach().clone()
    with torch.no_grad():
        average.module.net[1].weight.fill_(7.0)
    compat.swap_weight_average(callback, model)
    assert torch.all(model.net[1].weight == 7.0) and torch.equal(average.module.net[1].weight, old)


def test_on_hydra_error_sees_the_exception_before_hydra_reports_it(monkeypatch):
    from hydra._internal import utils

    from catdog.compat import on_hydra_error

    monkeypatch.setattr(utils, "run_and_report", utils.run_and_report)  # restored after the test
    seen = []
    on_hydra_error(lambda e: seen.append(e))

    def fail():
        raise KeyError("composition")

    with pytest.raises(SystemExit):  # the handler re-raised: Hydra printed its own message and exited 1
        utils.run_and_report(fail)
    assert [type(e) for e in seen] == [KeyError]


def test_lightnings_info_lines_go_through_the_logger_catdog_filters(caplog):
    # catdog.run.quiet filters Lightning's cloud tips on this logger
    from pytorch_lightning.utilities.rank_zero import rank_zero_info

    caplog.set_level(logging.INFO)
    rank_zero_info("a line")
    assert [r.name for r in caplog.records if r.getMessage() == "a line"] == [
        compat.lightning_info_logger().name
    ]


def test_a_trial_of_a_loaded_study_reports_into_the_running_trial(tmp_path):
    optuna = pytest.importorskip("optuna")
    url = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="s", storage=url)
    study.ask()
    asked = study.ask()
    loaded = optuna.load_study(study_name="s", storage=url)
    trial = compat.trial_of_number(loaded, 1)
    trial.report(0.5, 1)
    assert trial.number == 1 and study.trials[asked.number].intermediate_values == {1: 0.5}
