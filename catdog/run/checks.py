"""The check of a composed config, before anything runs: impossible values become one message naming the key.

The data's, the network's and the model's rules live in their settings and specs (data/settings.py,
models/convnet_settings.py, models/settings.py), which the components build too; this module builds the same objects from
the config, so a wrong value stops the run before any photo is decoded. The few keys that belong to no component
(trainer, optimizer, tags) are checked here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from catdog.data.settings import DataSettings
from catdog.errors import CatdogError
from catdog.models.settings import ModelSettings
from catdog.rules import check_all, is_int, is_int_list, is_number, require
from catdog.run.speed import check_settings

CHECKS = {
    "batch_size": (lambda v: is_int(v) and v >= 1, "a positive integer"),
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
    "split": (lambda v: v in (None, "val", "test"), "val or test"),  # evaluate's held-out split
    "device": (lambda v: v in ("auto", "cpu", "cuda", "gpu"), "auto, cpu or cuda"),  # evaluate's, predict's
    "keep_freed_memory": (lambda v: isinstance(v, bool), "true or false"),
    "tags": (lambda v: isinstance(v, list | tuple), "a list, e.g. [baseline,small]"),
}


def _plain(value):
    """Config containers as plain lists and dicts, so the specs' type checks see what the components get."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def check_plain_tail(spec: ModelSettings, max_epochs) -> None:
    """model.augment.plain_last_epochs counts back from trainer.max_epochs: it needs that limit, above it."""
    plain = spec.augmentation.plain_last_epochs if spec.augmentation else 0
    if plain and not (is_int(max_epochs) and max_epochs > plain):
        raise CatdogError(
            f"model.augment.plain_last_epochs={plain} needs trainer.max_epochs above it (it is {max_epochs}): the "
            "plain epochs are the last ones. Raise trainer.max_epochs or lower model.augment.plain_last_epochs."
        )


def check_resize_until(spec: ModelSettings, max_epochs, fast_dev_run=False) -> None:
    """model.progressive_resize trains below data.resolution until its until_epoch: the run must go past it (a
    trainer.fast_dev_run of a batch or a few checks that the code runs, not what it learns)."""
    until = (spec.progressive_resize or {}).get("until_epoch")
    if is_int(until) and is_int(max_epochs) and 0 <= max_epochs <= until and not fast_dev_run:
        raise CatdogError(
            f"model.progressive_resize.until_epoch={until} needs trainer.max_epochs above it (it is {max_epochs}): "
            "every epoch would train below data.resolution, then validate at it. Raise trainer.max_epochs or lower "
            "model.progressive_resize.until_epoch."
        )


def check_init_from(cfg: DictConfig) -> None:
    """init_from starts a new run from a file's weights; ckpt_path goes on with a run: one or the other (ckpt_path=auto
    with init_from: a requeued job resumes its own checkpoint where there is one, else starts from init_from)."""
    init = cfg.get("init_from")
    if init is None:
        return
    if cfg.get("ckpt_path") not in (None, "auto"):
        raise CatdogError(
            f"init_from={init} and ckpt_path={cfg.ckpt_path}: init_from starts a new run from a file's weights, "
            "ckpt_path resumes a run with its optimizer and epoch: give one of them."
        )
    if not Path(str(init)).expanduser().is_file():
        raise CatdogError(
            f"init_from={init}: no such file. Give a .ckpt written by train.py or a torch.save'd state_dict."
        )


def check_key(cfg: DictConfig, key: str) -> None:
    """CHECKS' rule for `key`, where the config has it."""
    ok, expected = CHECKS[key]
    value = _plain(OmegaConf.select(cfg, key, default=KeyError))
    if value is not KeyError:
        require(ok(value), key, value, expected)


def may_give_test(source) -> bool:
    """Whether data.source may give a test split of its own: a test/ folder in its top two levels, or an archive
    or labels CSV (training checks those once it has listed them)."""
    root = Path(str(source)).expanduser()
    try:
        if root.is_file():
            return True
        tops = [root, *(d for d in root.iterdir() if d.is_dir())] if root.is_dir() else []
        return any(d.name.lower() == "test" and d.is_dir() for top in tops for d in top.iterdir())
    except OSError:
        return False


def check_test_split(cfg: DictConfig) -> None:
    """test=true needs data.test_fraction, unless the source gives a test split (split folders, a labels CSV)."""
    if not cfg.get("test") or OmegaConf.select(cfg, "data.test_fraction", default=0):
        return
    given = OmegaConf.select(cfg, "data.given_splits", default=True)
    folders = OmegaConf.select(cfg, "data.split_folders", default="auto") is not False
    if not (given and folders and may_give_test(OmegaConf.select(cfg, "data.source", default=""))):
        raise CatdogError(
            "test=true needs a test split: set data.test_fraction, e.g. data.test_fraction=0.1."
        )


def validate(cfg: DictConfig, model: bool = True) -> None:
    """Raise one CatdogError naming every config value that cannot work, a line each (model=False: leave the model
    out, for commands that only prepare data)."""
    rules: list[Callable[[], object]] = [partial(check_key, cfg, key) for key in CHECKS]
    if cfg.get("data") is not None:
        rules.append(lambda: DataSettings.from_config(cfg.data))
    if model and "in_channels" in cfg.get("model", {}):
        max_epochs = OmegaConf.select(cfg, "trainer.max_epochs")
        dev_run = OmegaConf.select(cfg, "trainer.fast_dev_run", default=False)
        rules.append(lambda: check_epochs(ModelSettings.from_config(_plain(cfg.model)), max_epochs, dev_run))
    check_all(
        *rules, partial(check_settings, cfg), partial(check_test_split, cfg), partial(check_init_from, cfg)
    )


def check_epochs(spec: ModelSettings, max_epochs, fast_dev_run=False) -> None:
    """The model's rules that count epochs against trainer.max_epochs."""
    check_all(
        partial(check_plain_tail, spec, max_epochs),
        partial(check_resize_until, spec, max_epochs, fast_dev_run),
    )
