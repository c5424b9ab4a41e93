"""The hyperparameters a run reports: a flat dict for every logger, and TensorBoard's HPARAMS tab."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from catdog.compat import tensorboard_file_writer
from catdog.data.settings import DECODE_KEYS, SPLIT_KEYS

# what decides what a run learns of its data: how the photos are decoded and split, and the batch size
DATA_KEYS = (*DECODE_KEYS, *SPLIT_KEYS, "batch_size")
HPARAM_METRICS = ("val/acc", "val/loss")


def _flatten(prefix: str, node: Any, out: dict[str, Any]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if not str(k).startswith("_"):
                _flatten(f"{prefix}.{k}", v, out)
        return
    out[prefix] = node if isinstance(node, bool | int | float | str) else str(node)


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """model.* (optimizer and scheduler included), the data.* values that decide what is learned, seed, tags:
    flat, scalars."""
    out: dict[str, Any] = {}
    _flatten("model", OmegaConf.to_container(cfg.model, resolve=True), out)
    for key in DATA_KEYS:
        if key in cfg.data:
            out[f"data.{key}"] = cfg.data[key]
    out["seed"] = cfg.get("seed")
    out["tags"] = ",".join(map(str, cfg.get("tags") or []))
    out["trainer.max_epochs"] = cfg.trainer.get("max_epochs")
    return {k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in out.items()}


@rank_zero_only
def log_hparams(loggers: list, cfg: DictConfig) -> None:
    """Give every logger the flat hyperparameters; make TensorBoard list the run with val/acc and val/loss.

    Lightning's TensorBoardLogger writes the HPARAMS summaries only together with metric values it logs as
    extra scalar points; the summaries are written here directly instead, and the plugin reads the metrics'
    values from the curves the run logs anyway.
    """
    from pytorch_lightning.loggers import TensorBoardLogger
    from torch.utils.tensorboard.summary import hparams

    params = flat_hparams(cfg)
    for logger in loggers:
        logger.log_hyperparams(params)
        if isinstance(logger, TensorBoardLogger):
            writer = tensorboard_file_writer(logger.experiment)
            for summary in hparams(params, dict.fromkeys(HPARAM_METRICS, 0.0)):
                writer.add_summary(summary)
