"""The global random states that augmentation and dropout draw from: saved in checkpoints (Lightning's omit
them), so a resumed run draws the same numbers an uninterrupted one would."""

from __future__ import annotations

import random
from typing import Any, cast

import numpy as np
import torch

RNG_KEY = "catdog_rng_states"


def rng_states() -> dict[str, Any]:
    """The global random states that augmentation and dropout draw from (Lightning's checkpoints omit them)."""
    name, keys, pos, has_gauss, gauss = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    numpy_state = (
        name,
        torch.from_numpy(keys.astype(np.int64)),
        pos,
        has_gauss,
        gauss,
    )  # loads with weights_only
    states = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
