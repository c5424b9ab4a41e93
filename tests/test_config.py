"""Configs: the groups compose, every check names its key before anything runs, one-line user errors, sweep
summaries of failed jobs."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from importlib.util import find_spec

import pytest
from helpers import ROOT, read_csv, tiny_overrides, train_in_process, write_split_tree
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import OmegaConf

from catdog.data.settings import DATA_KEYS
from catdog.errors import CatdogError
from catdog.models.convnet_settings import ConvNetSettings
from catdog.models.settings import MODEL_KEYS
from catdog.run.checks import CHECKS, validate
from catdog.run.hparams import flat_hparams
from catdog.run.launch import threads_per_job
from catdog.run.resume import resolve_ckpt_path
from catdog.shell.cli import user_error
from catdog.sweeps.summary import write_summary


def compose_train(*overrides: str, hydra_cfg: bool = False):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra_cfg)


# --- configs ---


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["trainer=ddp"], {"trainer.strategy": "ddp", "trainer.accelerator": "gpu", "trainer.num_nodes": 1}),
        (["trainer=ddp_cpu", "trainer.devices=2"], {"trainer.strategy": "ddp", "trainer.accelerator": "cpu"}),
        (["debug=fast_dev_run"], {"trainer.fast_dev_run": True, "task_name": "debug", "callbacks": None}),
        (["debug=overfit"], {"trainer.overfit_batches": 3}),
        (["debug=limit"], {"trainer.limit_train_batches": 10, "trainer.limit_val_batches": 4}),
        (["debug=profiler"], {"trainer.profiler._target_": "pytorch_lightning.profilers.SimpleProfiler"}),
        (["logger=many"], {"logger.tensorboard.name": "tensorboard", "logger.csv.name": "csv"}),
        (["logger=wandb"], {"logger.wandb.project": "catdog"}),
        (["logger=mlflow"], {"logger.mlflow.experiment_name": "train"}),
        (["experiment=tutorial"], {"model.loss": "mse"}),
        (["experiment=fast"], {"data.test_fraction": 0.1, "test": True, "optimized_metric": "val/acc"}),
        (["experiment=best"], {"data.test_fraction": 0.1, "test": True}),
        (["data.folds=5", "data.fold=2"], {"data.folds": 5, "data.fold": 2, "data.label_conflicts": "drop"}),
    ],
)
def test_config_groups_compose(overrides, expected):
    cfg = compose_train(*overrides)
    for key, value in expected.items():
        assert OmegaConf.select(cfg, key) == value, key
    for group in ("trainer", "callbacks", "logger"):  # every _target_ names a class that exists
        node = cfg.get(group) or {}
        for entry in [node] if "_target_" in node else node.values():
            assert get_class(entry._target_)


def test_default_callbacks_are_composed_from_files():
    cfg = compose_train()
    opt_in = {"ema", "lookahead"}  # weight averaging: callbacks=[default,ema]
    sets = {"default", "none", "audit"}  # lists of the files (audit: each fold model of catdog.audit)
    files = {p.stem for p in (ROOT / "configs/callbacks").glob("*.yaml")} - sets - opt_in
    assert set(cfg.callbacks) == files  # one file per callback, all the others on by default
    assert set(compose_train("callbacks=[default,ema,lookahead]").callbacks) == files | opt_in
    assert {"model_checkpoint", "early_stopping", "learning_rate_monitor", "progress_bar"} <= files
    assert (
        cfg.callbacks.last_checkpoint.filename == "last"
    )  # written every epoch, what ckpt_path=last resumes
    assert (ROOT / "configs/callbacks/default.yaml").read_text().count("- ") >= 4  # a defaults list of files


def test_the_audit_composes_the_fast_net_at_48_px_in_5_folds_over_every_photo():
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("audit", overrides=["data.source=x"])
    assert cfg.data.folds == 5 and cfg.data.resolution == 48 and cfg.data.test_fraction == 0 and not cfg.test
    assert cfg.model.channels == [16, 32, 64, 128] and cfg.model.tta and cfg.model.label_smoothing == 0
    assert set(cfg.callbacks) == {"last_checkpoint", "progress_bar", "epoch_timer"} and cfg.audit.top == 48
    assert cfg.data.exclude is None and cfg.task_name == "audit"


def test_optuna_and_cluster_launchers_compose():
    cfg = compose_train("hparams_search=optuna", hydra_cfg=True)
    assert cfg.hydra.sweeper._target_.endswith("CatdogOptunaSweeper") and cfg.hydra.sweeper.pruner == "none"
    assert cfg.hydra.sweeper.direction == "maximize" and cfg.optimized_metric == "val/acc"
    assert {
        "model.optimizer.lr",
        "model.channels",
        "model.kernel",
        "model.dropout",
        "data.batch_size",
    } <= set(cfg.hydra.sweeper.params)
    slurm = ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "trainer=ddp", "trainer.devices=4"]
    cfg = compose_train(*slurm, "trainer.num_nodes=2", hydra_cfg=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == (4, 4, 2)
    assert compose_train("hydra/launcher=joblib", hydra_cfg=True).hydra.launcher._target_.endswith(
        "JoblibLauncher"
    )
    assert any(c._target_ == "catdog.sweeps.summary.SweepSummary" for c in cfg.hydra.callbacks.values())


def test_every_hydra_callback_of_the_config_is_built():
    """configs/hydra/default.yaml names each Hydra callback by its import path: a class moved without its config
    would stop every command at its start."""
    from hydra.utils import instantiate

    built = [instantiate(c) for c in compose_train(hydra_cfg=True).hydra.callbacks.values()]
    assert sorted(type(c).__name__ for c in built) == ["KeepRunRecord", "RunDirSpace", "SweepSummary"]


# every key of the data settings and the model's specs; a path (data.cache_dir, ...) may be any string
SPEC_KEYS = (
    [f"data.{k}" for k in DATA_KEYS if k not in ("seed", "cache_dir", "download_dir", "download_url")]
    + [
        f"model.{f.name}"
        for f in fields(ConvNetSettings)
        if f.init and f.name not in ("in_channels", "resolution")
    ]
    + [f"model.{k}" for k in MODEL_KEYS]
)


@pytest.mark.parametrize("key", sorted(CHECKS) + SPEC_KEYS)
def test_every_check_rejects_a_wrong_type(key):
    cfg = compose_train()
    validate(cfg)  # the defaults pass
    OmegaConf.set_struct(cfg, False)  # batch_size belongs to predict's config
    OmegaConf.update(cfg, key, {"tags": 3, "data.source": ""}.get(key, "abc"))
    with pytest.raises(CatdogError, match=key.replace(".", r"\.")):
        validate(cfg)


@pytest.mark.parametrize(
    "key, value",
    [
        ("model.kernel", []),
        ("trainer.devices", 0),
        ("seed", None),
        ("data.layout", "flat"),
        ("data.split_folders", "maybe"),
        ("data.loader", "gpu"),
    ],
)
def test_values_that_cannot_work_are_named_before_anything_runs(key, value):
    cfg = compose_train()
    OmegaConf.update(cfg, key, value)
    with pytest.raises(CatdogError, match=rf"{key.replace('.', chr(92) + '.')}=.* is invalid"):
        validate(cfg)


def test_test_true_needs_a_test_split():
    cfg = compose_train()
    OmegaConf.update(cfg, "test", True)
    with pytest.raises(CatdogError, match="test=true needs a test split: set data.test_fraction"):
        validate(cfg)
    OmegaConf.update(cfg, "data.test_fraction", 0.1)
    validate(cfg)


def test_test_true_takes_a_test_folder_for_a_test_split(tmp_path):
    """A split tree with test/ gives the test split itself; one without it is named before any photo is read."""
    with_test = write_split_tree(tmp_path / "a", {"train": 1, "test": 1})
    validate(compose_train(f"data.source={with_test}", "test=true"))
    without = write_split_tree(tmp_path / "b", {"train": 1, "val": 1})
    with pytest.raises(CatdogError, match="test=true needs a test split"):
        validate(compose_train(f"data.source={without}", "test=true"))
    with pytest.raises(CatdogError, match="test=true needs a test split"):
        validate(compose_train(f"data.source={with_test}", "test=true", "data.split_folders=false"))


def test_every_bad_value_is_named_once_in_one_error():
    # the top-level checks', the data's (decode, split, loading), the network's and the training rules'
    bad = {
        "trainer.max_epochs": "-3",
        "data.batch_size": "0",
        "data.layout": "x",
        "seed": "x",
        "model.dropout": "2",
        "model.loss": "l1",
        "model.augment.blur": "0.5",
        "threads": "zero",
    }
    overrides = [f"{'+' if k.startswith('model.augment') else ''}{k}={v}" for k, v in bad.items()]
    with pytest.raises(CatdogError) as caught:
        validate(compose_train(*overrides, "test=true", "data.test_fraction=0"))
    lines = str(caught.value).splitlines()
    assert lines[0] == "9 config values cannot work:" and len(lines) == 10
    for key in bad:
        assert sum(line.startswith(f"  {key}=") and " is invalid: " in line for line in lines) == 1, key
    assert "  test=true needs a test split: set data.test_fraction, e.g. data.test_fraction=0.1." in lines
    # the net checks data.channels too: one wrong value, one line
    with pytest.raises(CatdogError) as caught:
        validate(compose_train("data.channels=5"))
    assert str(caught.value).startswith("data.channels=5 is invalid") and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "override, message",
    [
        ("+model.kernl=3", "model.kernl is not a setting of model (did you mean model.kernel?)"),
        (
            "+model.label_smothing=0.1",
            "model.label_smothing is not a setting of model (did you mean model.label_smoothing?)",
        ),
    ],
)
def test_a_key_added_to_model_that_nothing_takes_is_named_before_anything_runs(override, message):
    # Hydra lets `+` add any key; the classifier would refuse it only when built, after the photos are decoded
    with pytest.raises(CatdogError, match=re.escape(message)):
        validate(compose_train(override))


def test_every_trainer_key_of_the_configs_is_lightnings_and_a_typo_is_named():
    from catdog.run.hardware import check_trainer_keys

    groups = {
        group: sorted(p.stem for p in (ROOT / "configs" / group).glob("*.yaml"))
        for group in ("trainer", "debug")
    }
    assert len(groups["trainer"]) >= 5 and len(groups["debug"]) >= 4
    for group, options in groups.items():
        for option in options:
            check_trainer_keys(compose_train("experiment=best", f"{group}={option}").trainer)
    with pytest.raises(
        CatdogError,
        match=re.escape("trainer.max_epoch is not a setting of trainer (did you mean trainer.max_epochs?)"),
    ):
        check_trainer_keys(compose_train("+trainer.max_epoch=3").trainer)


def test_check_all_raises_a_lone_error_as_it_is_and_folds_the_rest_into_one():
    from catdog.data.settings import missing_exclude_file
    from catdog.rules import ConfigErrors, check_all, require

    lone = missing_exclude_file("gone.csv")

    def fails(exc):
        def rule():
            raise exc

        return rule

    with pytest.raises(CatdogError) as caught:
        check_all(lambda: None, fails(lone))
    assert caught.value is lone
    nested = ConfigErrors(["a is wrong", "b is wrong"])
    with pytest.raises(ConfigErrors) as caught:
        check_all(fails(nested), fails(CatdogError("b is wrong")), lambda: require(False, "c", 1, "2"))
    assert caught.value.problems == [
        "a is wrong",
        "b is wrong",
        "c=1 is invalid: expected 2. Fix it on the command line or in configs/.",
    ]
    check_all(lambda: None, lambda: require(True, "c", 1, "2"))  # nothing wrong: nothing raised


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.folds=5", "data.fold=5"], "data.fold=5 is invalid: expected one of 0..4 (data.folds=5)"),
        (["data.folds=1"], "data.folds=1 is invalid: expected the number of folds (>= 2)"),
        (["data.label_conflicts=ignore"], "data.label_conflicts='ignore' is invalid: expected drop or keep"),
    ],
)
def test_fold_and_label_conflict_settings_are_checked(overrides, message):
    with pytest.raises(CatdogError, match=re.escape(message)):
        validate(compose_train(*overrides))


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.kernel=abc", "model.kernel='abc' is invalid: expected a positive integer"),
        ("data.resolution=-3", "data.resolution=-3 is invalid: expected a positive integer"),
        ("+model.kernl=3", "model.kernl is not a setting of model (did you mean model.kernel?)"),
        (
            "+trainer.max_epoch=3",
            "trainer.max_epoch is not a setting of trainer (did you mean trainer.max_epochs?)",
        ),
    ],
)
def test_config_errors_are_one_line(image_folder, tmp_path, override, message):
    # a CatdogError: the entry points print it as the one `error:` line (test_train shows that as a user sees it)
    with pytest.raises(CatdogError) as caught:
        train_in_process(*tiny_overrides(image_folder, tmp_path), override)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "cache").exists()  # found before any data is prepared


def test_ckpt_path_last_needs_the_old_run_dir(tmp_path):
    with pytest.raises(CatdogError, match="hydra.run.dir=<old run dir> ckpt_path=last"):
        resolve_ckpt_path("last", tmp_path)
    with pytest.raises(CatdogError, match="no checkpoint"):
        resolve_ckpt_path(str(tmp_path / "nope.ckpt"), tmp_path)
    assert resolve_ckpt_path("auto", tmp_path) is None  # a first attempt starts fresh
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert resolve_ckpt_path("last", tmp_path) == str(tmp_path / "checkpoints" / "last.ckpt")
    assert resolve_ckpt_path("auto", tmp_path) == str(
        tmp_path / "checkpoints" / "last.ckpt"
    )  # a requeued one resumes


@pytest.mark.parametrize("logger", ["wandb", "mlflow"])
def test_a_logger_whose_package_is_missing_is_one_line(image_folder, tmp_path, logger):
    if find_spec(logger) is not None:
        pytest.skip(f"{logger} is installed here")
    with pytest.raises(Exception) as caught:
        train_in_process(*tiny_overrides(image_folder, tmp_path), f"logger={logger}")
    # what the entry points print after `error: ` instead of the traceback
    assert user_error(caught.value) == (
        f"logger.{logger} needs the optional package {logger}, which is not installed: pip install {logger}"
    )


def test_a_bug_is_no_user_error():
    assert user_error(ValueError("a bug")) is None


def test_a_lightning_config_error_is_a_user_error():
    import pytorch_lightning as pl
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    with pytest.raises(MisconfigurationException) as caught:
        pl.Trainer(accelerator="cpu", devices=0, logger=False)
    assert user_error(caught.value) == str(caught.value) and "devices" in str(caught.value)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.optimizer._target_=torch.optim.Adamm", "Error locating target 'torch.optim.Adamm'"),
        ("+model.kernal=3", "model.kernal is not a setting of model (did you mean model.kernel?)"),
    ],
)
def test_a_wrong_target_or_argument_in_a_config_is_a_user_error(override, message):
    import hydra

    cfg = compose_train(override)
    with pytest.raises(Exception) as caught:
        hydra.utils.instantiate(cfg.model, classes=["Cat", "Dog"])
    text = user_error(caught.value)
    assert text is not None and message in text and "pip" not in text


def test_flat_hparams_are_scalars():
    params = flat_hparams(compose_train("model.kernel=3", "tags=[a,b]"))
    assert params["model.kernel"] == 3 and params["model.optimizer.lr"] == 0.001
    assert params["model.channels"] == "[32, 64, 128]" and params["tags"] == "a,b" and params["seed"] == 0
    assert {"data.resolution", "data.channels", "data.batch_size"} <= set(params)
    assert not any(k.split(".")[-1].startswith("_") for k in params)


def test_threads_per_job_splits_the_cores():
    assert threads_per_job(2, cpus=16) == 8
    assert threads_per_job(32, cpus=16) == 1
    assert threads_per_job(-1, cpus=16) == 1


def test_summary_marks_a_job_without_result(tmp_path):
    for num, kernel, files in (
        (0, 3, {"metrics.json": {"val/acc": 0.75, "val/n_images": 16}}),
        (1, 5, {}),
        (2, 7, {"metrics.json": {"val/acc": 0.5, "val/n_images": 2500}}),
    ):
        job = tmp_path / str(num)
        (job / ".hydra").mkdir(parents=True)
        OmegaConf.save({"hydra": {"job": {"num": num}}}, job / ".hydra" / "hydra.yaml")
        OmegaConf.save(
            [f"model.kernel={kernel}", "seed=1", "~callbacks.sample_grid"],
            job / ".hydra" / "overrides.yaml",
        )
        for name, content in files.items():
            (job / name).write_text(json.dumps(content))
    markdown = write_summary(tmp_path, "val/acc", maximize=True)
    rows = read_csv(tmp_path / "summary.csv")
    assert [(r["job"], r["model.kernel"], r["status"]) for r in rows] == [
        ("0", "3", "ok"),
        ("1", "5", "no result"),
        ("2", "7", "ok"),
    ]
    assert "seed" not in rows[0]  # the same in every job: listed once above the table
    # how many images each accuracy rests on (a limit_val_batches job's is a handful)
    assert [r["val/n_images"] for r in rows] == ["16", "", "2500"] and "| 16 |" in markdown
    assert "Best val/acc: 0.7500 on 16 val photos, job 0 (model.kernel=3)" in markdown
    assert "Each run's metrics rest on 16 to 2,500 val photos" in markdown
    assert "Best val/acc: 0.5000" in write_summary(tmp_path, "val/acc", maximize=False)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_every_optimizer_runs_fused_on_the_cpu(name):
    """One kernel for the whole update: configs/model/optimizer/*.yaml set fused, and torch takes it on a CPU."""
    import hydra
    import torch

    factory = hydra.utils.instantiate(compose_train(f"model/optimizer={name}").model.optimizer)
    net = torch.nn.Linear(3, 2)
    optimizer = factory(params=net.parameters())
    assert optimizer.defaults["fused"] is True
    before = net.weight.detach().clone()
    net(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    assert not torch.equal(before, net.weight)
