"""The check of a composed config, before anything runs: impossible values become one message naming the key.

The network's and the data's rules live in their specs (models/spec.py, data/spec.py), which the components
build too; this module builds the same specs from the config, so a wrong value stops the run before the data is
decoded. The few keys that belong to no component (trainer, optimizer, tags) are checked here.
"""

from __future__ import annotations

from dataclasses import fields

from omegaconf import DictConfig, OmegaConf

from catdog.data.spec import DataSpec
from catdog.errors import CatdogError
from catdog.models.augment_spec import augment_spec
from catdog.models.options import check_progressive_resize, check_whiten
from catdog.models.spec import NET_KEYS, convnet_spec, invalid, is_int, is_int_list, is_number
from catdog.run.calibrate import check_settings

CHECKS = {
    "batch_size": (lambda v: is_int(v) and v >= 1, "a positive integer"),
    "model.label_smoothing": (lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "model.optimizer.lr": (lambda v: is_number(v) and v > 0, "a positive number, e.g. 0.001"),
    "trainer.max_epochs": (
        lambda v: v is None or (is_int(v) and v >= -1),
        "a positive integer (-1 = no limit)",
    ),
    "trainer.devices": (
        lambda v: (is_int(v) and (v >= 1 or v == -1)) or v == "auto" or (is_int_list(v) and len(v) > 0),
        "a number of devices (-1 = all), 'auto', or a list of device ids",
    ),
    "trainer.num_nodes": (lambda v: is_int(v) and v >= 1, "a positive integer (machines)"),
    "seed": (is_int, "an integer (the split and the batch order follow it)"),
    "tags": (lambda v: isinstance(v, list | tuple), "a list, e.g. [baseline,small]"),
}
DATA_KEYS = [f.name for f in fields(DataSpec)]


def _plain(value):
    """Config containers as plain lists and dicts, so the specs' type checks see what the components get."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def validate(cfg: DictConfig, model: bool = True) -> None:
    """Raise CatdogError for the first config value that cannot work (model=False: leave the model out, for
    commands that only prepare data)."""
    for key, (ok, expected) in CHECKS.items():
        value = _plain(OmegaConf.select(cfg, key, default=KeyError))
        if value is not KeyError and not ok(value):
            raise invalid(key, value, expected)
    data = cfg.get("data")
    if data is not None and "_target_" in data:
        DataSpec(**{k: _plain(data[k]) for k in DATA_KEYS if k in data})
    if model and "in_channels" in cfg.get("model", {}):
        net = {k: _plain(cfg.model[k]) for k in NET_KEYS if k in cfg.model}
        spec = convnet_spec(net, _plain(cfg.model.in_channels), _plain(cfg.model.resolution))
        check_progressive_resize(_plain(cfg.model.get("progressive_resize")), spec)
        check_whiten(_plain(cfg.model.get("whiten")), spec)
        augment_spec(_plain(cfg.model.get("augment")), spec.resolution)
    check_settings(cfg)
    if cfg.get("test") and not OmegaConf.select(cfg, "data.test_fraction", default=0):
        raise CatdogError(
            "test=true needs a test split: set data.test_fraction, e.g. data.test_fraction=0.1."
        )
