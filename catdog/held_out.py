"""Which photos evaluate scores, and what a checkpoint records of the photos it trained on: the held-out split of its
training data rebuilt from that record (or the split data.source's split folders give), the photos it trained on or
copies of them, and the photos its training left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from catdog.checkpoint import read_checkpoint
from catdog.data.cache import CachedArrays
from catdog.data.duplicates import copies_of, phash_values, photo_ids
from catdog.data.exclude import exclusion_mask
from catdog.data.settings import SplitSettings
from catdog.data.split import SPLITS, assign_splits
from catdog.errors import CatdogError

# where a checkpoint records its training data: Lightning stores a DataModule's state_dict under its class name
TRAINING_DATA = "ImageDataModule"


def training_data(cfg: DictConfig) -> dict | None:
    """What the checkpoint records of its training data; fills in data.source with it when none is given."""
    trained_on = read_checkpoint(cfg.ckpt_path).get(TRAINING_DATA)
    if cfg.data.get("source") is not None:
        return trained_on
    if not trained_on:
        raise CatdogError(
            f"ckpt_path={cfg.ckpt_path} records no training data (it predates that record): "
            "give data.source=PATH, the photos to score."
        )
    if not Path(trained_on["source"]).exists():
        raise CatdogError(
            f"ckpt_path={cfg.ckpt_path} was trained on {trained_on['source']}, which is not there any more: "
            "give data.source=PATH, the photos to score."
        )
    cfg.data.source = trained_on["source"]
    return trained_on


def training_splits(arrays: CachedArrays, trained_on: dict) -> np.ndarray:
    """Each photo's split code (an index of SPLITS) in the checkpoint's training, rebuilt from its record."""
    groups, given = arrays.photos["group"], arrays.photos["split"]
    return assign_splits(groups, arrays.labels, SplitSettings.from_config(trained_on), None, given)


def scored_photos(
    arrays: CachedArrays, trained_on: dict | None, held_out: bool, wanted: str | None = None
) -> tuple[np.ndarray, str]:
    """The photos to score: a held-out split of the training data (`wanted`, else test where there is one, else
    val), or all of them."""
    if not held_out:
        return np.arange(len(arrays.labels)), "all"
    codes = training_splits(arrays, trained_on)  # type: ignore[arg-type]  # held_out: recorded
    has_test = (codes == SPLITS.index("test")).any()
    if wanted == "test" and not has_test:
        raise CatdogError(
            f"split=test: {trained_on['source']} has no test split in the checkpoint's training (its "  # type: ignore[index]
            "data.test_fraction was 0 and it has no test/ folder): score split=val, or train with "
            "data.test_fraction > 0."
        )
    split = wanted or ("test" if has_test else "val")
    indices = np.flatnonzero(codes == SPLITS.index(split))
    if not len(indices):
        raise CatdogError(
            f"data.source={trained_on['source']}: no photo of it is held out from training any more (files "  # type: ignore[index]
            "removed?). Give data.source=PATH, the photos to score."
        )
    return indices, split


def given_split(arrays: CachedArrays, split: str, source) -> tuple[np.ndarray, str]:
    """The photos of data.source in the split its split folders (or labels CSV) give: split=test scores test/."""
    indices = np.flatnonzero(np.asarray(arrays.photos["split"]) == split)
    if not len(indices):
        raise CatdogError(
            f"split={split}: data.source={source} gives no {split} split (no {split}/ folder beside train/, nor a "
            "split column): leave split= out to score every photo of it, or give split=... without data.source to "
            "score a held-out split of the data the checkpoint was trained on."
        )
    return indices, split


def seen_in_training(arrays: CachedArrays, indices: np.ndarray, trained_on: dict | None) -> int | None:
    """How many of the scored photos were in the checkpoint's training split or are copies of its photos, as the
    split tells copies (catdog.data.duplicates.copies_of; checkpoints before that record: the same bytes only)."""
    if not trained_on:
        return None
    ids = photo_ids([arrays.photos["sha256"][i] for i in indices])
    seen = np.isin(ids, trained_on["train_ids"].numpy())
    if "train_phash_ids" in trained_on:
        phash = phash_values([arrays.photos["phash"][i] for i in indices])
        seen |= copies_of(phash, trained_on["train_phash_ids"].numpy().view(np.uint64))
    return int(seen.sum())


def excluded_photos(cfg: DictConfig, arrays: CachedArrays, trained_on: dict | None) -> np.ndarray:
    """The photos to leave out of the metrics: those the checkpoint's training left out (its data.exclude, by
    content) and those data.exclude names now."""
    excluded = exclusion_mask(cfg.data.get("exclude"), arrays.photos)
    if excluded is None:
        excluded = np.zeros(len(arrays.labels), dtype=bool)
    recorded = (trained_on or {}).get("excluded_ids")
    if recorded is not None and len(recorded):
        excluded |= np.isin(photo_ids(arrays.photos["sha256"]), recorded.numpy())
    return excluded
