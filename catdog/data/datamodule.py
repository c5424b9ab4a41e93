"""The Lightning DataModule: cached arrays in, stratified seeded splits and whole-batch loaders out."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from catdog.data.cache import CachedArrays
from catdog.data.dataset import prepare_dataset, summarize
from catdog.data.duplicates import phash_values, photo_ids
from catdog.data.exclude import exclusion_mask, exclusion_tag
from catdog.data.loaders import (
    ResumableDataLoader,
    SeededShuffle,
    TensorBatches,
    available_memory,
    choose_loader,
)
from catdog.data.settings import DataSettings
from catdog.data.split import (
    CROSSING_FILE,
    SPLITS,
    assign_splits,
    balance,
    class_weights,
    split_order,
    split_rows,
    uses_given,
)
from catdog.data.split_folders import given_split_log
from catdog.errors import CatdogError
from catdog.io import replace_atomic, write_csv

log = logging.getLogger(__name__)
NO_TEST_SPLIT = (
    "data.test_fraction=0 and data.source gives no test split: there is no test split. Set data.test_fraction "
    "(e.g. 0.1), or add a test/ folder beside train/."
)


class ArrayDataset(Dataset):
    """Images and labels of one split; fetches a whole batch with one fancy index (no per-sample collate)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray):
        self.images, self.labels, self.indices = images, labels, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitems__(self, batch: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.indices[np.asarray(batch)]
        x = torch.from_numpy(np.ascontiguousarray(self.images[idx])).permute(0, 3, 1, 2)
        return x, torch.from_numpy(self.labels[idx])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([i])
        return x[0], y[0]


def keep_batch(batch):
    """`collate_fn` for ArrayDataset: the batch is already stacked."""
    return batch


class ImageDataModule(pl.LightningDataModule):
    """The photos of `settings.source`, decoded and cached as `settings.decode` says, split as `settings.split`
    says (built by `DataSettings.from_config(cfg.data)`, which checks them)."""

    def __init__(self, settings: DataSettings):
        super().__init__()
        self.settings = settings
        # the loaders' batch size: Lightning's batch-size finder (tune=batch_size) sets this attribute
        self.batch_size = settings.batch_size
        self.arrays: CachedArrays | None = None
        self.splits: dict[str, np.ndarray] = {}
        self.excluded: np.ndarray | None = None  # the photos data.exclude leaves out

    def prepare_data(self) -> None:
        """Decode and cache once (on one process per node); setup() then only loads. Nothing to do in a process
        whose setup() already ran (training.train sets up before fitting, to learn the classes)."""
        if self.arrays is None:
            prepare_dataset(self.settings)

    def setup(self, stage: str | None = None) -> None:
        if self.arrays is not None:
            return
        split = self.settings.split
        self.arrays = prepare_dataset(self.settings)
        log.info("Data: %s", summarize(self.arrays.report))
        labels, photos = self.arrays.labels, self.arrays.photos
        self.excluded = exclusion_mask(split.exclude, photos)
        if self.excluded is not None:
            log.info("data.exclude=%s: %d photos left out of every split", split.exclude, self.excluded.sum())
        given = photos["split"] if uses_given(split, photos["split"]) else None
        codes = assign_splits(photos["group"], labels, split, self.excluded, given)
        if given is not None:
            log.info("Data: %s", given_split_log(given, split.val_fraction))
            self._warn_crossing()
        self.splits = {
            name: split_order(np.flatnonzero(codes == i), labels, photos["sha256"], split.seed)
            for i, name in enumerate(SPLITS)
        }
        self.split_rows = split_rows(self.arrays.photos["path"], self.arrays.photos["label"], codes)
        self.split_file = self._write_split_file()
        before = np.bincount(labels[self.splits["train"]], minlength=self.num_classes)
        self.splits["train"] = balance(self.splits["train"], labels, split.balance, split.seed)
        after = np.bincount(labels[self.splits["train"]], minlength=self.num_classes)
        log.info(
            "Split (seed %d%s): %s (listed in %s); train per class %s -> %s after balance=%s",
            split.seed,
            f", fold {split.fold} of {split.folds}" if split.folds else "",
            ", ".join(f"{k} {len(v):,}" for k, v in self.splits.items()),
            self.split_file,
            dict(zip(self.classes, before.tolist())),
            dict(zip(self.classes, after.tolist())),
            split.balance,
        )

    def _warn_crossing(self) -> None:
        """The one warning for copies that sit in two given splits: they stay where the user put them."""
        crossing = self.prepared.report.get("n_duplicates_across_splits", 0)
        if crossing:
            log.warning(
                "%d duplicate groups cross the splits data.source gives (a photo, or a near copy of it, in two of "
                "train/val/test): kept where they are, so val/test hold photos that training saw; listed in %s",
                crossing,
                self.prepared.directory / CROSSING_FILE,
            )

    def _write_split_file(self) -> Path:
        """The cache's `splits/<setting>/splits.csv` (path,label,split per photo), so a user can see and diff it."""
        tag = exclusion_tag(self.excluded, self.prepared.photos["sha256"])
        if uses_given(self.settings.split, self.prepared.photos["split"]):
            tag = "-given" + tag
        path = self.prepared.directory / "splits" / self.settings.split.folder(tag) / "splits.csv"
        if not path.exists():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.write_splits(path)
            except OSError as e:
                log.warning("Could not write %s (%s); the split is recomputed from the seed.", path, e)
        return path

    def write_splits(self, path: Path) -> None:
        """This split as `path,label,split` rows (a run dir's splits.csv; the cache holds the same file)."""
        rows = self.split_rows
        replace_atomic(path, lambda f: write_csv(f, ("path", "label", "split"), rows), binary=False)

    def state_dict(self) -> dict:
        """Stored in checkpoints: the training data (DataSettings.record: the source, the decode and split
        settings), the compact content hashes of its training split and of the photos data.exclude left out, and
        the training photos' perceptual hashes, so evaluate can score the held-out photos and count photos seen in
        training (their copies too, re-saved or resized: the near duplicates a split keeps together)."""
        if self.arrays is None:
            return {}
        sha256 = self.arrays.photos["sha256"]
        train = np.unique(self.splits["train"])
        excluded: np.ndarray | list[int] = np.flatnonzero(self.excluded) if self.excluded is not None else []
        return {
            **self.settings.record(),
            "train_ids": torch.from_numpy(np.unique(photo_ids([sha256[i] for i in train]))),
            "excluded_ids": torch.from_numpy(np.unique(photo_ids([sha256[i] for i in excluded]))),
            "train_phash_ids": torch.from_numpy(
                np.unique(phash_values([self.arrays.photos["phash"][i] for i in train])).view(np.int64)
            ),
        }

    def load_state_dict(self, state: dict) -> None:
        """On resume: warn when photos the checkpoint trained on now sit in val or test (another seed, fraction,
        fold or source), since its val/test numbers would then be inflated."""
        if "train_ids" not in state or self.arrays is None:
            return
        held_out = np.concatenate([self.splits["val"], self.splits["test"]])
        ids = photo_ids([self.arrays.photos["sha256"][i] for i in held_out])
        leaked = int(np.isin(ids, state["train_ids"].cpu().numpy()).sum())
        if leaked:
            log.warning(
                "%d val/test photos were in the training split of the checkpoint being resumed (its data "
                "settings: %s): their metrics are inflated. Resume with the checkpoint's data settings.",
                leaked,
                {k: v for k, v in state.items() if not k.endswith("_ids")},
            )

    def exclusion_metrics(self) -> dict[str, int]:
        """`data/n_excluded` for metrics.json: how many photos data.exclude left out (none without it)."""
        return {} if self.excluded is None else {"data/n_excluded": int(self.excluded.sum())}

    def partial_evaluation(self, metrics: dict[str, float]) -> list[str]:
        """A warning for each split a run evaluated only in part (limit_*_batches, fast_dev_run, overfit)."""
        notes = []
        for split in ("val", "test"):
            seen, total = metrics.get(f"{split}/n_images"), len(self.splits.get(split, ()))
            if seen is not None and seen < total:
                notes.append(
                    f"{split}/acc rests on {int(seen):,} of the {total:,} {split} images "
                    f"(trainer.limit_{split}_batches, fast_dev_run or overfit_batches): not a result."
                )
        return notes

    @property
    def prepared(self) -> CachedArrays:
        """The arrays, for the type checker: setup() loads them before anything reads them."""
        return cast(CachedArrays, self.arrays)

    @property
    def classes(self) -> list[str]:
        return self.prepared.classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_weights(self) -> list[float] | None:
        """Loss weights for data.balance=class_weight, from the training split's class counts."""
        if self.settings.split.balance != "class_weight":
            return None
        return class_weights(self.prepared.labels[self.splits["train"]], self.num_classes).tolist()

    def train_sample(self, max_images: int = 5000) -> np.ndarray:
        """A seeded sample of the training split's images, N,H,W,C uint8 (its indices are grouped by class: a
        prefix would hold one class)."""
        train = self.splits["train"]
        rng = np.random.default_rng(self.settings.split.seed)
        return self.prepared.images[
            np.sort(rng.choice(train, size=min(max_images, len(train)), replace=False))
        ]

    def channel_stats(self, max_images: int = 5000) -> dict[str, list[float]]:
        """Per-channel mean and std of the training split's pixels (0-1 scale), for input normalization."""
        x = self.train_sample(max_images)
        # from each channel's histogram of its 256 values, exact in float64 and 0.3 s: numpy's float32 reduction
        # over the sample's 61 M values took 2.4 s of every fast run on a 2-core CPU and was 1.2% off in std
        counts = np.stack([np.bincount(x[..., c].ravel(), minlength=256) for c in range(x.shape[-1])])
        values = np.arange(256) / 255.0
        n = counts.sum(1)
        mean = counts @ values / n
        std = np.sqrt(np.maximum(counts @ values**2 / n - mean**2, 0.0))
        return {"mean": mean.tolist(), "std": (std + 1e-6).tolist()}

    def dataset(self, split: str) -> ArrayDataset:
        return ArrayDataset(self.prepared.images, self.prepared.labels, self.splits[split])

    def tensor_bytes(self, split: str) -> int:
        """What a split takes as tensors on its device: its images (uint8) and labels (int64)."""
        images = self.prepared.images
        return len(self.splits[split]) * (images[0].nbytes + 8) if len(images) else 0

    def _device(self) -> torch.device:
        """The training device (the CPU outside a Trainer)."""
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def _tensor_loader(self, split: str, shuffle: bool) -> TensorBatches:
        device = self._device()
        idx = self.splits[split]
        images = torch.from_numpy(self.prepared.images[idx]).to(device)
        labels = torch.from_numpy(self.prepared.labels[idx]).to(device)
        sampler = SeededShuffle(len(idx), self.settings.split.seed) if shuffle else None
        return TensorBatches(images, labels, self.batch_size, sampler)

    def _loader(self, split: str, shuffle: bool) -> DataLoader | TensorBatches:
        distributed = self.trainer is not None and self.trainer.world_size > 1
        settings, seed = self.settings, self.settings.split.seed
        if settings.loader != "dataloader" and not distributed:
            device = self._device()
            choice = choose_loader(
                settings.loader, split, self.tensor_bytes(split), available_memory(device), str(device)
            )
            if choice == "tensor":
                return self._tensor_loader(split, shuffle)
        dataset = self.dataset(split)
        return ResumableDataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=SeededShuffle(len(dataset), seed) if shuffle else None,
            collate_fn=keep_batch,
            num_workers=settings.loader_workers,
            persistent_workers=settings.loader_workers > 0,
            # its own seeds for the workers: drawing them from the global generator, which a checkpoint restores,
            # would shift dropout and augmentation after a mid-epoch resume
            generator=torch.Generator().manual_seed(seed),
        )

    def train_dataloader(self) -> DataLoader | TensorBatches:
        # overfit_batches repeats the first batches of the split's class-interleaved order: every class is in them
        overfit = self.trainer is not None and self.trainer.overfit_batches > 0  # type: ignore[attr-defined]  # set in Trainer.__init__ by a connector
        return self._loader("train", shuffle=not overfit)

    def val_dataloader(self) -> DataLoader | TensorBatches:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader | TensorBatches:
        if not len(self.splits["test"]):
            raise CatdogError(NO_TEST_SPLIT)
        return self._loader("test", shuffle=False)
