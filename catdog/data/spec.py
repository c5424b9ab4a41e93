"""The data config's rules, in one place and without torch: the config check builds a DataSpec before any data
is prepared, and ImageDataModule builds the same spec from its arguments, so each rule exists once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from catdog.errors import CatdogError
from catdog.models.spec import invalid, is_int, is_number

LAYOUTS = ("auto", "folders", "kaggle")
BALANCE_MODES = ("none", "undersample", "oversample", "class_weight")
LOADERS = ("dataloader", "tensor")
LABEL_CONFLICTS = ("drop", "keep")


def check_choice(key: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise invalid(key, value, " or ".join(choices))


def missing_exclude_file(path) -> CatdogError:
    return CatdogError(
        f"data.exclude={path}: no such file. Give an audit.csv of `python -m catdog.audit` or a text file of "
        "photo paths, or data.exclude=null."
    )


@dataclass(frozen=True)
class DataSpec:
    """The `data.*` values that decide what is trained on and how it is split and batched."""

    source: str
    resolution: int = 50
    channels: int = 1
    layout: str = "auto"
    val_fraction: float = 0.1
    test_fraction: float = 0.0
    balance: str = "none"
    batch_size: int = 100
    loader: str = "dataloader"
    seed: int = 0
    fast_decode: bool = False
    folds: int | None = None
    fold: int = 0
    label_conflicts: str = "drop"
    exclude: str | None = None

    def __post_init__(self) -> None:
        if self.source is None or str(self.source).strip() == "":
            raise invalid(
                "data.source", self.source, "a folder or archive of images (is CATDOG_DATA set but empty?)"
            )
        if not (is_int(self.resolution) and self.resolution >= 1):
            raise invalid("data.resolution", self.resolution, "a positive integer (pixels), e.g. 50")
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise invalid("data.channels", self.channels, "1 (grayscale) or 3 (colour)")
        if not (is_int(self.batch_size) and self.batch_size >= 1):
            raise invalid("data.batch_size", self.batch_size, "a positive integer")
        if not (is_int(self.seed)):
            raise invalid("seed", self.seed, "an integer (the split and the batch order follow it)")
        if not isinstance(self.fast_decode, bool):
            raise invalid("data.fast_decode", self.fast_decode, "true or false")
        check_choice("data.layout", self.layout, LAYOUTS)
        check_choice("data.balance", self.balance, BALANCE_MODES)
        check_choice("data.loader", self.loader, LOADERS)
        check_choice("data.label_conflicts", self.label_conflicts, LABEL_CONFLICTS)
        self._check_folds()
        self._check_exclude()
        val, test = self.val_fraction, self.test_fraction
        if not (is_number(val) and is_number(test) and 0 < val < 1 and 0 <= test < 1 and val + test < 1):
            raise CatdogError(
                f"data.val_fraction={val}, data.test_fraction={test}: need 0 < val_fraction, "
                "0 <= test_fraction and val_fraction + test_fraction < 1."
            )

    def _check_exclude(self) -> None:
        """data.exclude is null or a file (its contents are read with the data: catdog.data.exclude)."""
        if self.exclude is None:
            return
        if not isinstance(self.exclude, str) or not Path(self.exclude).expanduser().is_file():
            raise missing_exclude_file(self.exclude)

    def _check_folds(self) -> None:
        """data.folds is null (one val split) or K >= 2, and data.fold one of 0..K-1."""
        if not is_int(self.fold):
            raise invalid("data.fold", self.fold, "the index of the val fold, 0..data.folds-1")
        if self.folds is None:
            return
        if not (is_int(self.folds) and self.folds >= 2):
            raise invalid("data.folds", self.folds, "the number of folds (>= 2), or null for one val split")
        if not (is_int(self.fold) and 0 <= self.fold < self.folds):
            raise invalid("data.fold", self.fold, f"one of 0..{self.folds - 1} (data.folds={self.folds})")
