"""The Lightning DataModule: cached arrays in, stratified seeded splits and whole-batch loaders out."""

from __future__ import annotations

import logging

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from catdog.data.cache import CachedArrays
from catdog.data.decode import DEFAULT_MAX_PIXELS
from catdog.data.loaders import ResumableDataLoader, SeededShuffle, TensorBatches
from catdog.data.preprocess import prepare_from_config, summarize
from catdog.data.spec import DataSpec
from catdog.data.split import balance, class_weights, stratified_split
from catdog.errors import CatdogError
from catdog.io import save_npy_atomic

log = logging.getLogger(__name__)


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
    def __init__(
        self,
        source: str,
        resolution: int = 50,
        channels: int = 1,
        cache_dir: str = "data/cache",
        layout: str = "auto",
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        balance: str = "none",
        batch_size: int = 100,
        seed: int = 0,
        skip_truncated: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        fast_decode: bool = False,
        num_workers: int | None = None,
        loader: str = "dataloader",
        loader_workers: int = 0,
        download_dir: str | None = None,
        download_url: str | None = None,
        progress: bool = True,
    ):
        super().__init__()
        DataSpec(
            source,
            resolution,
            channels,
            layout,
            val_fraction,
            test_fraction,
            balance,
            batch_size,
            loader,
            seed,
            fast_decode,
        )
        self.save_hyperparameters(logger=False)
        self.arrays: CachedArrays | None = None
        self.splits: dict[str, np.ndarray] = {}

    def _prepare(self) -> CachedArrays:
        return prepare_from_config(self.hparams, source=str(self.hparams.source))

    def prepare_data(self) -> None:
        """Decode and cache once (on one process per node); setup() then only loads. Nothing to do in a process
        whose setup() already ran (training.train sets up before fitting, to learn the classes)."""
        if self.arrays is None:
            self._prepare()

    def setup(self, stage: str | None = None) -> None:
        if self.arrays is not None:
            return
        h = self.hparams
        self.arrays = self._prepare()
        log.info("Data: %s", summarize(self.arrays.report))
        labels = self.arrays.labels
        self.splits = self._load_or_make_split(labels)
        before = np.bincount(labels[self.splits["train"]], minlength=self.num_classes)
        self.splits["train"] = balance(self.splits["train"], labels, h.balance, h.seed)
        after = np.bincount(labels[self.splits["train"]], minlength=self.num_classes)
        log.info(
            "Split (seed %d): %s; train per class %s -> %s after balance=%s",
            h.seed,
            ", ".join(f"{k} {len(v):,}" for k, v in self.splits.items()),
            dict(zip(self.classes, before.tolist())),
            dict(zip(self.classes, after.tolist())),
            h.balance,
        )

    def _load_or_make_split(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        """The split is stored beside the cache, so every run with these settings validates on the same images.

        Each split lists its indices in ascending order, whether computed now or loaded, so batch order depends only
        on the sampler's seed.
        """
        h = self.hparams
        path = self.arrays.directory / f"split-seed{h.seed}-val{h.val_fraction}-test{h.test_fraction}.npy"
        assign = None
        if path.exists():
            try:
                assign = np.load(path)
            except (OSError, ValueError):
                assign = None
        if assign is None or assign.shape != labels.shape:
            splits = stratified_split(labels, h.val_fraction, h.test_fraction, h.seed)
            assign = np.zeros(len(labels), dtype=np.int8)
            assign[splits["val"]], assign[splits["test"]] = 1, 2
            try:
                save_npy_atomic(path, assign)
            except OSError as e:
                log.warning(
                    "Could not store the split beside the cache (%s); it is recomputed from the seed.", e
                )
        return {name: np.flatnonzero(assign == i) for i, name in enumerate(("train", "val", "test"))}

    @property
    def classes(self) -> list[str]:
        return self.arrays.classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_weights(self) -> list[float] | None:
        """Loss weights for data.balance=class_weight, from the training split's class counts."""
        if self.hparams.balance != "class_weight":
            return None
        return class_weights(self.arrays.labels[self.splits["train"]], self.num_classes).tolist()

    def train_sample(self, max_images: int = 5000) -> np.ndarray:
        """A seeded sample of the training split's images, N,H,W,C uint8 (its indices are grouped by class: a
        prefix would hold one class)."""
        train = self.splits["train"]
        rng = np.random.default_rng(self.hparams.seed)
        return self.arrays.images[np.sort(rng.choice(train, size=min(max_images, len(train)), replace=False))]

    def channel_stats(self, max_images: int = 5000) -> dict[str, list[float]]:
        """Per-channel mean and std of the training split's pixels (0-1 scale), for input normalization."""
        x = self.train_sample(max_images).astype(np.float32) / 255.0
        return {"mean": x.mean(axis=(0, 1, 2)).tolist(), "std": (x.std(axis=(0, 1, 2)) + 1e-6).tolist()}

    def dataset(self, split: str) -> ArrayDataset:
        return ArrayDataset(self.arrays.images, self.arrays.labels, self.splits[split])

    def _tensor_loader(self, split: str, shuffle: bool) -> TensorBatches:
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        idx = self.splits[split]
        images = torch.from_numpy(self.arrays.images[idx]).to(device)
        labels = torch.from_numpy(self.arrays.labels[idx]).to(device)
        sampler = SeededShuffle(len(idx), self.hparams.seed) if shuffle else None
        return TensorBatches(images, labels, self.hparams.batch_size, sampler)

    def _loader(self, split: str, shuffle: bool) -> DataLoader | TensorBatches:
        distributed = self.trainer is not None and self.trainer.world_size > 1
        if self.hparams.loader == "tensor" and not distributed:
            return self._tensor_loader(split, shuffle)
        dataset = self.dataset(split)
        return ResumableDataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            sampler=SeededShuffle(len(dataset), self.hparams.seed) if shuffle else None,
            collate_fn=keep_batch,
            num_workers=self.hparams.loader_workers,
            persistent_workers=self.hparams.loader_workers > 0,
            # its own seeds for the workers: drawing them from the global generator, which a checkpoint restores,
            # would shift dropout and augmentation after a mid-epoch resume
            generator=torch.Generator().manual_seed(self.hparams.seed),
        )

    def train_dataloader(self) -> DataLoader | TensorBatches:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | TensorBatches:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader | TensorBatches:
        if not len(self.splits["test"]):
            raise CatdogError(
                "data.test_fraction=0: there is no test split. Set data.test_fraction (e.g. 0.1)."
            )
        return self._loader("test", shuffle=False)
