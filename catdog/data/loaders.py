"""The fast data path: a split held as one uint8 tensor (on the training device) and batched by indexing."""

from __future__ import annotations

from collections.abc import Iterator

import torch


class TensorBatches:
    """Yields (images, labels) batches in the same order as DataLoader(shuffle=True, generator seeded alike).

    No worker processes, no per-sample fetching or collation: one index_select per batch, on the GPU when the
    tensor lives there.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0):
        self.images, self.labels, self.batch_size, self.shuffle = images, labels, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed) if shuffle else None

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.images.device)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.images.index_select(0, idx), self.labels.index_select(0, idx)
