"""The `data` config in one shape: how photos are decoded (DecodeSettings, what the cache key hashes), how they are
split (SplitSettings, what the split, its splits.csv and a checkpoint's record use) and the rest of a run's data
settings (DataSettings, which holds both). Built by keyword from the config (`DataSettings.from_config(cfg.data)`)
and passed whole to the DataModule, to preparation and into the checkpoint: a new data option is one field here
(and its default in configs/data/catdog.yaml). No torch: the config check builds them before any photo is decoded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path

from catdog.errors import CatdogError
from catdog.rules import (
    check_all,
    check_channels,
    check_known,
    check_resolution,
    field_rules,
    invalid,
    is_int,
    is_number,
    pick,
    require,
)

LAYOUTS = ("auto", "folders", "kaggle")
BALANCE_MODES = ("none", "undersample", "oversample", "class_weight")
LOADERS = ("dataloader", "tensor", "auto")
LABEL_CONFLICTS = ("drop", "keep")
RESIZE_MODES = ("squash", "crop", "pad")  # how a photo that is not square becomes one (catdog.preprocessing)
DEFAULT_MAX_PIXELS = 100_000_000  # refuse decompression bombs before OpenCV allocates them


def missing_exclude_file(path) -> CatdogError:
    return CatdogError(
        f"data.exclude={path}: no such file. Give an audit.csv of `python -m catdog.audit` or a text file of "
        "photo paths, or data.exclude=null."
    )


@dataclass(frozen=True)
class DecodeSettings:
    """Everything the cached arrays depend on besides the photos themselves: the cache key hashes these fields
    (with the files found), so equal settings share a cache and any change decodes anew."""

    resolution: int = 50
    channels: int = 1
    layout: str = "auto"  # which files are photos and which class folder each is in
    split_folders: str | bool = "auto"  # a top level of train/, val/, test/ folders: its splits (or classes)
    skip_truncated: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS
    fast_decode: bool = False
    resize: str = "squash"

    def __post_init__(self) -> None:
        pixels = is_int(self.max_pixels) and self.max_pixels >= 1
        folders = self.split_folders == "auto" or isinstance(self.split_folders, bool)
        check_all(
            partial(check_resolution, self.resolution),
            partial(check_channels, self.channels),
            *field_rules(
                self,
                "data.",
                (
                    ("layout", self.layout in LAYOUTS, " or ".join(LAYOUTS)),
                    ("split_folders", folders, "auto, true or false"),
                    ("skip_truncated", isinstance(self.skip_truncated, bool), "true or false"),
                    ("max_pixels", pixels, "a positive number of pixels, e.g. 100000000"),
                    ("fast_decode", isinstance(self.fast_decode, bool), "true or false"),
                    ("resize", self.resize in RESIZE_MODES, " or ".join(RESIZE_MODES)),
                ),
            ),
            self._check_kaggle_splits,
        )

    def _check_kaggle_splits(self) -> None:
        if self.split_folders is True and self.layout == "kaggle":
            raise CatdogError(
                "data.split_folders=true reads class folders below each split folder, and data.layout=kaggle "
                "reads classes from flat file names: set data.layout=auto (or folders), or data.split_folders=auto."
            )

    @classmethod
    def from_config(cls, values: Mapping) -> DecodeSettings:
        """From a `data` config or a checkpoint's record of its training data: this object's keys (one left out
        keeps its default); the others are not its to check."""
        return cls(**pick(values, DECODE_KEYS))


@dataclass(frozen=True)
class SplitSettings:
    """Which photos train, validate and test (catdog.data.split) and how the training split is balanced."""

    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.0
    folds: int | None = None
    fold: int = 0
    label_conflicts: str = "drop"
    exclude: str | None = None  # the file of photos left out (its contents are read with the data)
    balance: str = "none"
    given_splits: bool = True  # false: a split tree's (or labels.csv's) photos are split by the hashed rule

    def __post_init__(self) -> None:
        seed = "an integer (the split and the batch order follow it)"
        exclude = self.exclude is None or isinstance(self.exclude, str)
        check_all(
            partial(require, is_int(self.seed), "seed", self.seed, seed),
            self._check_fractions,
            self._check_folds,
            *field_rules(
                self,
                "data.",
                (
                    (
                        "label_conflicts",
                        self.label_conflicts in LABEL_CONFLICTS,
                        " or ".join(LABEL_CONFLICTS),
                    ),
                    ("exclude", exclude, "a file of the photos to leave out, or null"),
                    ("balance", self.balance in BALANCE_MODES, " or ".join(BALANCE_MODES)),
                    ("given_splits", isinstance(self.given_splits, bool), "true or false"),
                ),
            ),
        )

    def _check_fractions(self) -> None:
        val, test = self.val_fraction, self.test_fraction
        if not (is_number(val) and is_number(test) and 0 < val < 1 and 0 <= test < 1 and val + test < 1):
            raise CatdogError(
                f"data.val_fraction={val}, data.test_fraction={test}: need 0 < val_fraction, "
                "0 <= test_fraction and val_fraction + test_fraction < 1."
            )

    def _check_folds(self) -> None:
        """data.folds is null (one val split) or K >= 2, and data.fold one of 0..K-1."""
        if not is_int(self.fold):
            raise invalid("data.fold", self.fold, "the index of the val fold, 0..data.folds-1")
        if self.folds is None:
            return
        if not (is_int(self.folds) and self.folds >= 2):
            raise invalid("data.folds", self.folds, "the number of folds (>= 2), or null for one val split")
        if not 0 <= self.fold < self.folds:
            raise invalid("data.fold", self.fold, f"one of 0..{self.folds - 1} (data.folds={self.folds})")

    @classmethod
    def from_config(cls, values: Mapping) -> SplitSettings:
        """From a `data` config or a checkpoint's record of its training data, as DecodeSettings.from_config."""
        return cls(**pick(values, SPLIT_KEYS))

    def folder(self, exclude_tag: str = "") -> str:
        """`seed0-val0.1-test0.0`, or `seed0-test0.1-fold1of5`, plus `-conflicts-keep` and data.exclude's
        `-exclude<hash>` where they apply: the folder of a cache's `splits/<setting>/splits.csv` (sweep jobs with
        other seeds or folds share one cache)."""
        name = f"seed{self.seed}-val{self.val_fraction}-test{self.test_fraction}"
        if self.folds:
            name = f"seed{self.seed}-test{self.test_fraction}-fold{self.fold}of{self.folds}"
        return name + ("-conflicts-keep" if self.label_conflicts == "keep" else "") + exclude_tag


DECODE_KEYS = tuple(f.name for f in fields(DecodeSettings))
SPLIT_KEYS = tuple(f.name for f in fields(SplitSettings))


@dataclass(frozen=True)
class DataSettings:
    """A run's `data` config: where the photos are, how they are decoded and split, and how they are cached,
    prepared and batched."""

    source: str | None = None
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    split: SplitSettings = field(default_factory=SplitSettings)
    cache_dir: str = "data/cache"
    batch_size: int = 100
    # tensor: the whole split as one tensor on the training device; auto: tensor where it fits (data/loaders.py)
    loader: str = "dataloader"
    loader_workers: int = 0  # DataLoader workers
    num_workers: int | None = None  # decoding processes (null: every usable core)
    download_dir: str | None = (
        None  # the official archive is downloaded here when data.source is this empty dir
    )
    download_url: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        source = self.source is not None and str(self.source).strip() != ""
        workers = is_int(self.loader_workers) and self.loader_workers >= 0
        check_all(
            *field_rules(
                self,
                "data.",
                (
                    ("source", source, "a folder or archive of images (is CATDOG_DATA set but empty?)"),
                    ("batch_size", is_int(self.batch_size) and self.batch_size >= 1, "a positive integer"),
                    ("loader", self.loader in LOADERS, " or ".join(LOADERS)),
                    ("loader_workers", workers, "a number of processes (0 = none)"),
                    (
                        "num_workers",
                        self.num_workers is None or is_int(self.num_workers),
                        "a number of processes, or null for all cores",
                    ),
                    ("progress", isinstance(self.progress, bool), "true or false"),
                ),
            ),
            self._check_exclude_file,
        )

    def _check_exclude_file(self) -> None:
        # a run reads the file; a checkpoint's record of it (SplitSettings alone) needs only the photos' hashes
        exclude = self.split.exclude
        if exclude is not None and not Path(exclude).expanduser().is_file():
            raise missing_exclude_file(exclude)

    @classmethod
    def from_config(cls, data: Mapping) -> DataSettings:
        """The settings of a `data` config (a DictConfig or a dict; a key left out keeps its default), its decode
        and split keys grouped; a key that is no setting is named with the closest real one."""
        check_known("data", data.keys(), DATA_KEYS)
        parts: dict = {}
        check_all(  # every wrong value at once: the decode keys', the split keys' and the rest's
            lambda: parts.update(decode=DecodeSettings.from_config(data)),
            lambda: parts.update(split=SplitSettings.from_config(data)),
            lambda: cls(**pick(data, RUN_KEYS)),  # the rest's rules, beside the default decode and split
        )
        return cls(**parts, **pick(data, RUN_KEYS))

    def record(self) -> dict:
        """What a checkpoint records of its training data (with its photos' hashes): the source, resolved, and
        every decode and split setting, flat, as in the config (checkpoints of catdog 0.2 hold a subset)."""
        source = str(Path(str(self.source)).expanduser().resolve())
        return {"source": source, **asdict(self.decode), **asdict(self.split)}


RUN_KEYS = tuple(f.name for f in fields(DataSettings) if f.name not in ("decode", "split"))
DATA_KEYS = (*RUN_KEYS, *DECODE_KEYS, *SPLIT_KEYS)  # every key of the `data` config
