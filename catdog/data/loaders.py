"""Batch order and the fast data path: a split held as one uint8 tensor (on the training device), batched by indexing."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class SeededShuffle(Sampler[int]):
    """The permutation of epoch k is a function of (seed, k) alone: the order both data paths share, and the order
    a resumed run sees (Lightning calls `set_epoch` on a loader's `.sampler` before every training epoch)."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch = n, seed, 0

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def permutation(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=generator)

    def __iter__(self) -> Iterator[int]:
        return iter(self.permutation().tolist())


class TensorBatches:
    """Yields (images, labels) batches of N,H,W,C `images` in the same order as a DataLoader with the same sampler.

    No worker processes, no per-sample fetching or collation: one index_select per batch, on the GPU when the
    tensor lives there.
    """

    batch_sampler = None  # read by Lightning, as on a DataLoader with a plain sampler

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, sampler: SeededShuffle | None
    ):
        self.images, self.labels, self.batch_size, self.sampler = images, labels, batch_size, sampler

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    @property
    def dataset(self) -> torch.Tensor:
        """What Lightning sizes the split by, as a DataLoader's dataset (the batch-size finder stops at it)."""
        return self.labels

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = self.sampler.permutation() if self.sampler is not None else torch.arange(n)
        order = order.to(self.images.device)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            # N,C,H,W views of channel-last pixels, as the DataLoader path's batches are: convolutions run faster
            yield self.images.index_select(0, idx).permute(0, 3, 1, 2), self.labels.index_select(0, idx)
