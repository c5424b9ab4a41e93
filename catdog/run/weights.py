"""Network weights from a file, held against the network this run's config builds, layer by layer, before any photo
is decoded: a file that does not fit is one line naming its first layer that differs and the settings behind it.

- `ckpt_path=FILE` resumes a run: its network must be the config's (another model.kernel or data.resolution would
  end in a `size mismatch` traceback after the data is prepared).
- `init_from=PATH` starts a run from the network weights of a catdog `.ckpt` or of a `torch.save`d state_dict (the
  classifier's, keys `net.*`, or its network's): only the weights; the optimizer, schedule, epoch counter and weight
  average start fresh. The last layer is made anew when the classes differ (names, case-blind, or count); the input
  scaling (model.normalize's mean/std) is the file's, the scale its weights were trained on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from torch import nn

from catdog.checkpoint import UNREADABLE, model_arguments, read_checkpoint
from catdog.errors import CatdogError
from catdog.models.arch import KINDS, settings_class
from catdog.models.classifier import ImageClassifier

log = logging.getLogger(__name__)
NET_PREFIX = "net."


def shape_settings() -> dict[str, str]:
    """The classifier's arguments that shape the network's weights, and the config keys that set them: the input,
    the network's kind and every kind's own keys."""
    keys = sorted({k for kind in KINDS for k in settings_class(kind).keys()})
    inputs = {"in_channels": "data.channels", "resolution": "data.resolution", "arch": "model.arch"}
    return inputs | {k: f"model.{k}" for k in keys}


@dataclass(frozen=True)
class Weights:
    """A file's network weights (keys without `net.`) and, for a catdog checkpoint, its classifier's arguments."""

    path: Path
    state: dict[str, torch.Tensor]
    hparams: dict | None = None

    @property
    def classes(self) -> list[str] | None:
        return list(self.hparams["classes"]) if self.hparams else None


def network_state(state: dict) -> dict[str, torch.Tensor]:
    """The network's entries of a classifier's state_dict (`net.*`), or the whole of a network's own."""
    if any(k.startswith(NET_PREFIX) for k in state):
        return {k[len(NET_PREFIX) :]: v for k, v in state.items() if k.startswith(NET_PREFIX)}
    return dict(state)


def read_weights(path: str | Path) -> Weights:
    """The network weights of `init_from=PATH`; one line when the file holds none."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CatdogError(
            f"init_from={path}: no such file. Give a .ckpt written by train.py or a torch.save'd state_dict."
        )
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE as e:
        content, detail = None, (str(e).strip().splitlines() or [repr(e)])[0]
    else:
        detail = "it holds no tensors named like a network's"
    if (
        isinstance(content, dict)
        and "state_dict" in content
        and "classes" in content.get("hyper_parameters", {})
    ):
        return Weights(
            path, network_state(content["state_dict"]), model_arguments(content["hyper_parameters"])
        )
    if isinstance(content, dict) and content and all(isinstance(v, torch.Tensor) for v in content.values()):
        return Weights(path, network_state(content))
    raise CatdogError(
        f"init_from={path}: not a catdog checkpoint nor a network state_dict ({detail}). Give a .ckpt written by "
        "train.py, or a file of torch.save(model.state_dict())."
    )


def config_classifier(model: DictConfig, classes: list[str]) -> ImageClassifier:
    """The classifier this run's `model` config builds for `classes`, before the data is prepared (the input
    statistics of model.normalize are placeholders: they shape no weight)."""
    channels = int(model.in_channels)
    stats = {"mean": [0.0] * channels, "std": [1.0] * channels} if model.get("normalize") else {}
    return hydra.utils.instantiate(model, classes=list(classes), class_weights=None, _convert_="all", **stats)


def head_keys(net: nn.Module) -> set[str]:
    """The state_dict keys of the network's last layer with weights: the one that maps features to classes."""
    named = [(name, m) for name, m in net.named_modules() if list(m.parameters(recurse=False))]
    name, last = named[-1]
    return {f"{name}.{k}" if name else k for k in last.state_dict()}


def first_misfit(
    expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], skip=frozenset()
) -> str | None:
    """What keeps `given` from loading into a network whose state_dict is `expected` (keys in `skip` aside): its first
    layer that is missing or has another shape, in the network's order; None when every layer fits."""
    for key, tensor in expected.items():
        if key in skip:
            continue
        if key not in given:
            return f"the network's layer {key} is not in the file"
        if given[key].shape != tensor.shape:
            return f"layer {key} is {list(given[key].shape)} in the file, {list(tensor.shape)} here"
    extra = sorted(set(given) - set(expected) - set(skip))
    return f"the file has a layer {extra[0]} this network lacks" if extra else None


def hydra_value(value) -> str:
    """A value as an override writes it: [4,8], true, 0.1."""
    return json.dumps(value, separators=(",", ":")) if not isinstance(value, str) else value


def settings_behind(file_args: dict | None, here_args: dict) -> str:
    """The settings that differ between the file's network and this run's, or, for a bare state_dict (which does
    not record them), the settings that shape each kind of layer."""
    if file_args is None:
        return (
            "the file does not record its settings: a conv layer is [out channels (model.channels), in channels "
            "(data.channels for the first), kernel, kernel (model.kernel)], a dense one [out (model.hidden), in "
            "(model.hidden, or the flatten width: model.channels and data.resolution)]"
        )
    differ = [
        f"{key}={hydra_value(file_args[name])} (this run: {hydra_value(here_args.get(name))})"
        for name, key in shape_settings().items()
        if name in file_args and file_args[name] != here_args.get(name)
    ]
    return "it was trained with " + (", ".join(differ) if differ else "another kind of network")


def check_fits(
    setting: str,
    expected: ImageClassifier,
    weights: Weights,
    fix: str,
    skip: frozenset[str] | set[str] = frozenset(),
) -> None:
    """One line naming the first layer of `weights` that does not fit the network of `expected` and why."""
    misfit = first_misfit(network_state(expected.state_dict()), weights.state, skip)
    if misfit:
        why = settings_behind(weights.hparams, dict(expected.hparams))
        raise CatdogError(f"{setting}={weights.path}: {misfit}: {why}. {fix}")


def check_resume_fits(model: DictConfig, ckpt_path: str) -> None:
    """`ckpt_path=FILE`: the checkpoint's network is this config's, or one line naming the settings to give."""
    checkpoint = read_checkpoint(ckpt_path)
    args = model_arguments(checkpoint["hyper_parameters"])
    here = config_classifier(model, list(args["classes"]))
    weights = Weights(Path(ckpt_path), network_state(checkpoint["state_dict"]), args)
    wanted = " ".join(
        f"{key}={hydra_value(args[name])}"
        for name, key in shape_settings().items()
        if name in args and args[name] != here.hparams.get(name)
    )
    fix = f"Resume with the settings it was trained with ({wanted})" if wanted else "Resume with its settings"
    check_fits(
        "ckpt_path", here, weights, f"{fix}, or start from its weights with init_from={ckpt_path} instead."
    )


def check_init_fits(model: DictConfig, weights: Weights) -> None:
    """`init_from=PATH` before the data is prepared: every layer but the last (made anew for other classes) fits."""
    here = config_classifier(model, weights.classes or ["a", "b"])
    fix = "Give the settings it was trained with (the last layer may differ), or another file."
    check_fits("init_from", here, weights, fix, head_keys(here.net))


def load_init(model: ImageClassifier, weights: Weights) -> dict:
    """The file's weights into `model.net`; the last layer made anew when the classes differ. Returns what
    provenance.json and the checkpoints record."""
    classes = list(model.hparams.classes)
    head = head_keys(model.net)
    state = model.net.state_dict()
    same_head = all(k in weights.state and weights.state[k].shape == state[k].shape for k in head)
    if weights.classes is not None:
        same_head = same_head and [c.lower() for c in weights.classes] == [c.lower() for c in classes]
    loaded = {k: v for k, v in weights.state.items() if same_head or k not in head}
    model.net.load_state_dict(loaded, strict=False)
    if same_head:
        log.info(
            "init_from=%s: every layer's weights loaded, the last one too (classes %s)", weights.path, classes
        )
    else:
        log.info(
            "init_from=%s: the last layer (%s) is made anew: the file's classes are %s, this data's %s; every other "
            "layer's weights loaded",
            weights.path,
            ", ".join(sorted(head)),
            weights.classes or "not recorded in a bare state_dict",
            classes,
        )
    return {
        "path": str(weights.path.resolve()),
        "classes": weights.classes,
        "last_layer": "loaded" if same_head else "new",
        "freeze": model.hparams.get("freeze", 0),
    }
