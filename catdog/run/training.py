"""One training run from a composed config: data, model, loggers, callbacks, trainer; then metrics.json."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from catdog.callbacks.ema import averaging_first
from catdog.callbacks.pruning import pruned_epoch, trial_callbacks
from catdog.data.datamodule import NO_TEST_SPLIT, ImageDataModule
from catdog.data.settings import DataSettings
from catdog.errors import CatdogError
from catdog.io import write_json_atomic
from catdog.models.whiten import init_whitening
from catdog.run.checks import validate
from catdog.run.config_tree import print_config_tree
from catdog.run.hardware import check_accelerator, check_trainer_keys, resolve_precision
from catdog.run.hparams import log_hparams
from catdog.run.launch import ddp_env, end_ddp_job, install_ddp_launch_fix, share_cores
from catdog.run.memory import keep_freed_memory
from catdog.run.provenance import RecordProvenance, collect
from catdog.run.quiet import quiet_lightning
from catdog.run.resume import check_resume, resolve_ckpt_path
from catdog.run.speed import measure_speed_settings
from catdog.run.tune import run_tune
from catdog.run.weights import check_init_fits, check_resume_fits, load_init, read_weights
from catdog.sweeps.job_files import METRICS_FILE, PRUNED_FILE

log = logging.getLogger(__name__)


def instantiate_group(group: DictConfig | None, **extra_by_class: dict) -> list:
    """Every entry of a config group such as `callbacks` or `logger` that has a `_target_` (plus the extra
    arguments given for its class name)."""
    if not group:
        return []
    return [
        hydra.utils.instantiate(c, **extra_by_class.get(c._target_.rsplit(".", 1)[-1], {}))
        for c in group.values()
        if isinstance(c, DictConfig) and "_target_" in c
    ]


def final_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """Epoch-level metrics (Lightning also keeps per-step copies, suffixed _step/_epoch); image counts as integers."""
    return {
        k: int(v) if k.endswith("/n_images") else float(v)
        for k, v in trainer.callback_metrics.items()
        if k.startswith(("val/", "test/", "train/", "perf/")) and not k.endswith(("_step", "_epoch"))
    }


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and optionally test) the configured model; returns the final metrics, also written to metrics.json."""
    share_cores()
    quiet_lightning()
    validate(cfg)
    check_trainer_keys(cfg.trainer)
    check_accelerator(cfg.trainer)
    resolve_precision(cfg.trainer)
    memory = keep_freed_memory(cfg.get("keep_freed_memory", True))  # before the calibration times steps
    calibration = measure_speed_settings(
        cfg, Path(cfg.paths.speed_settings)
    )  # settles model.channels_last, compile, threads=auto
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)
    print_config_tree(cfg)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.output_dir)
    if ckpt_path is not None:  # a network of other settings: one line now, not a traceback after the data
        check_resume_fits(cfg.model, ckpt_path)
    # with ckpt_path=auto a run that resumes goes on from its own weights, not init_from's
    init = read_weights(cfg.init_from) if cfg.get("init_from") and ckpt_path is None else None
    if init is not None:
        check_init_fits(cfg.model, init)
    install_ddp_launch_fix()
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")
    output_dir = Path(cfg.paths.output_dir)

    datamodule = ImageDataModule(DataSettings.from_config(cfg.data))
    datamodule.setup("fit")  # builds or loads the cache: the model needs the classes
    if cfg.get("test") and not len(datamodule.splits["test"]):  # the source gave no test split after all
        raise CatdogError(f"test=true: {NO_TEST_SPLIT}")
    stats = datamodule.channel_stats() if cfg.model.get("normalize") else {}
    model = hydra.utils.instantiate(
        cfg.model,
        classes=datamodule.classes,
        class_weights=datamodule.class_weights(),
        _convert_="all",
        **stats,
    )
    if cfg.model.get("whiten"):  # a resumed run then loads the same filters from its checkpoint
        init_whitening(model.net, datamodule.train_sample())
    init_record = load_init(model, init) if init is not None else None
    resumed = {}
    if ckpt_path is not None:  # TensorBoard hides what the interrupted run logged after its checkpoint
        step = check_resume(ckpt_path, datamodule.classes, cfg.data.source)
        resumed["TensorBoardLogger"] = {"purge_step": step}
    loggers = instantiate_group(cfg.get("logger"), **resumed)
    if cfg.get("tune"):
        return run_tune(cfg, model, datamodule, loggers)
    provenance = {
        **collect(datamodule.prepared.directory.name),
        "speed_settings": calibration,
        "keep_freed_memory": memory,
        **({"init_from": init_record} if init_record else {}),
    }
    callbacks = [*averaging_first(instantiate_group(cfg.get("callbacks"))), RecordProvenance(provenance)]
    # in a job of hparams_search=optuna: report each epoch to the trial, stop when it is pruned
    callbacks += trial_callbacks(cfg)
    if not cfg.trainer.get("enable_progress_bar", True):  # the switch also turns off a configured bar
        callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.ProgressBar)]
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    log_hparams(loggers, cfg)
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(output_dir / "provenance.json", provenance)
        datamodule.write_splits(output_dir / "splits.csv")

    env, failed = ddp_env(), True
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics = final_metrics(trainer)
        pruned = pruned_epoch(callbacks)
        # validate() made sure there is a test split; a pruned trial is no result, so it is not tested
        if cfg.get("test") and not pruned:
            best = trainer.checkpoint_callback is not None and trainer.checkpoint_callback.best_model_path  # type: ignore[attr-defined]  # ModelCheckpoint's
            trainer.test(model, datamodule=datamodule, ckpt_path="best" if best else None)
            metrics.update(final_metrics(trainer))
        failed = False
    finally:
        end_ddp_job(trainer, env, failed)
    metrics.update(datamodule.exclusion_metrics())
    for note in datamodule.partial_evaluation(metrics):
        log.warning(note)
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(output_dir / METRICS_FILE, metrics)
        log.info("Metrics: %s (written to %s)", json.dumps(metrics), output_dir / METRICS_FILE)
        if pruned:
            write_json_atomic(output_dir / PRUNED_FILE, {"epochs": pruned, "metric": cfg.optimized_metric})
    return metrics


def optimized_value(metrics: dict[str, float], name: str | None) -> float | None:
    """The value a sweeper optimises; NaN when the run did not produce it."""
    if not name:
        return None
    return metrics.get(name, math.nan)
