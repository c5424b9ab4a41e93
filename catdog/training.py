"""One training run from a composed config: data, model, loggers, callbacks, trainer; then metrics.json."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from catdog.config import check_accelerator, validate
from catdog.data.cache import write_json_atomic

log = logging.getLogger(__name__)


def instantiate_group(group: DictConfig | None) -> list:
    """Every entry of a config group such as `callbacks` or `logger` that has a `_target_`."""
    if not group:
        return []
    return [hydra.utils.instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def final_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """Epoch-level metrics (Lightning also keeps per-step copies, suffixed _step/_epoch)."""
    return {
        k: float(v)
        for k, v in trainer.callback_metrics.items()
        if k.startswith(("val/", "test/", "train/")) and not k.endswith(("_step", "_epoch"))
    }


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and optionally test) the configured model; returns the final metrics, also written to metrics.json."""
    validate(cfg)
    check_accelerator(cfg.trainer)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")
    output_dir = Path(cfg.paths.output_dir)

    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    stats = datamodule.channel_stats() if cfg.model.get("normalize") else {}
    model = hydra.utils.instantiate(
        cfg.model, classes=datamodule.classes, class_weights=datamodule.class_weights(), _convert_="all", **stats
    )
    loggers = instantiate_group(cfg.get("logger"))
    callbacks = instantiate_group(cfg.get("callbacks"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = final_metrics(trainer)
    if cfg.get("test") and datamodule.hparams.test_fraction > 0:
        trainer.test(model, datamodule=datamodule, ckpt_path="best" if trainer.checkpoint_callback else None)
        metrics.update(final_metrics(trainer))
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(output_dir / "metrics.json", metrics)
        log.info("Metrics: %s (written to %s)", json.dumps(metrics), output_dir / "metrics.json")
    return metrics


def optimized_value(metrics: dict[str, float], name: str | None) -> float | None:
    """The value a sweeper optimises; NaN when the run did not produce it."""
    if not name:
        return None
    return metrics.get(name, math.nan)
