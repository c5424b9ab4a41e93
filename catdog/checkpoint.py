"""A training checkpoint read back: its contents, its classifier and whether a data set's classes fit it; one clear
message when the file is not a usable checkpoint."""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from pathlib import Path

import torch

from catdog.errors import CatdogError
from catdog.models.classifier import ImageClassifier, with_temperature

log = logging.getLogger(__name__)


def _existing(path: str | os.PathLike | None) -> Path:
    if path is None or str(path) in ("", "None"):
        raise CatdogError("ckpt_path is not set: give ckpt_path=FILE, e.g. a run's checkpoints/last.ckpt.")
    path = Path(path).expanduser()
    if not path.is_file():
        raise CatdogError(
            f"ckpt_path={path}: no such file. Give a .ckpt written by train.py (in <run>/checkpoints/)."
        )
    return path


def _unreadable(path: Path, e: Exception) -> CatdogError:
    unpickling = isinstance(e, pickle.UnpicklingError) or "Weights only load failed" in str(e)
    detail = "not a PyTorch checkpoint" if unpickling else (str(e).strip().splitlines() or [repr(e)])[0]
    return CatdogError(
        f"ckpt_path={path}: cannot be read as a catdog checkpoint ({detail}). "
        "Give a .ckpt written by train.py; the file may be incomplete or from another program."
    )


UNREADABLE = (
    OSError,
    RuntimeError,
    EOFError,
    KeyError,
    TypeError,
    ValueError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
)


def model_arguments(hparams: dict) -> dict:
    """A checkpoint's hyperparameters as ImageClassifier's arguments, for checkpoints of every catdog version."""
    args = dict(hparams)
    # catdog 0.2 nested the network's keys under `net` (model.net.*); 0.1 and 0.3 keep them at the top (model.*)
    args.update(args.pop("net", None) or {})
    return args


def load_classifier(path: str | os.PathLike | None) -> ImageClassifier:
    """The classifier of a checkpoint, on the CPU in eval mode; one clear message if the file is unusable."""
    path = _existing(path)
    checkpoint = read_checkpoint(path)
    try:
        model = ImageClassifier(**{**model_arguments(checkpoint["hyper_parameters"]), "compile": False})
        model.load_state_dict(with_temperature(checkpoint["state_dict"]))
    except UNREADABLE as e:
        raise _unreadable(path, e) from e
    return model.eval()


def read_checkpoint(path: str | Path) -> dict:
    """The raw contents of a training checkpoint (tensors memory-mapped); one clear message if unusable."""
    path = _existing(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        if not isinstance(checkpoint, dict) or "classes" not in checkpoint.get("hyper_parameters", {}):
            raise KeyError("no hyper_parameters.classes")
    except UNREADABLE as e:
        raise _unreadable(path, e) from e
    return checkpoint


def check_classes(
    data_classes: list[str],
    model_classes: list[str],
    source: str,
    ckpt_path: str,
    fix: str = "Evaluate on images of the classes the checkpoint knows.",
) -> None:
    """Labels are class indices in sorted name order: the data needs as many classes as the checkpoint."""
    if len(data_classes) != len(model_classes):
        raise CatdogError(
            f"data.source={source} has {len(data_classes)} classes ({', '.join(data_classes)}), but "
            f"ckpt_path={ckpt_path} was trained on {len(model_classes)} ({', '.join(model_classes)}). "
            f"{fix}"
        )
    if [c.lower() for c in data_classes] != [c.lower() for c in model_classes]:
        log.warning(
            "Class names differ: data %s, checkpoint %s; comparing them in sorted order.",
            data_classes,
            model_classes,
        )
