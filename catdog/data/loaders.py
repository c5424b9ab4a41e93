"""Batch order and the fast data path: a split held as one uint8 tensor (on the training device), batched by indexing."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler, SequentialSampler

from catdog.errors import CatdogError

log = logging.getLogger(__name__)
# the tensor path may take half the memory free on its device: the rest is for the network, its activations, the
# other splits' tensors and (on the CPU) the page cache that the memory-mapped cache reads through
TENSOR_SHARE = 0.5


def available_memory(device: torch.device) -> int:
    """Bytes free on `device` now: the GPU's free memory, or the system's MemAvailable (free plus reclaimable page
    cache; without /proc, the free pages)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def choose_loader(requested: str, split: str, needed: int, available: int, device: str) -> str:
    """`tensor` or `dataloader` for a split that takes `needed` bytes as a tensor on `device` with `available`
    bytes free: data.loader=auto takes the tensor path when it fits in TENSOR_SHARE of them (and logs which and
    why), an explicit data.loader=tensor that does not fit is an error with the estimate."""
    if requested == "dataloader":
        return requested
    fits = needed <= TENSOR_SHARE * available
    gb = f"{needed / 1e9:.2f} GB, {'within' if fits else 'more than'} {TENSOR_SHARE:.0%} of the {available / 1e9:.2f} GB free on {device}"
    if requested == "tensor" and not fits:
        raise CatdogError(
            f"data.loader=tensor: the {split} split as one tensor takes {gb}. Use data.loader=auto (the "
            "memory-mapped loader where the tensor does not fit) or data.loader=dataloader."
        )
    choice = "tensor" if fits else "dataloader"
    if requested == "auto":
        memory_mapped = (
            "the memory-mapped DataLoader" if choice == "dataloader" else "the whole split as one tensor"
        )
        log.info("data.loader=auto: %s for the %s split (%s)", memory_mapped, split, gb)
    return choice


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


class ResumableBatches:
    """Mid-epoch resume for a training loader: Lightning saves `state_dict()` in each checkpoint and, resuming, calls
    `load_state_dict` before the resumed epoch's first batch; that epoch then leaves out the batches the interrupted
    run trained on (the same order: SeededShuffle, or DDP's DistributedSampler, is a function of seed and epoch).
    Lightning does not prefetch from a loader with a length, so a batch handed out is a batch trained on."""

    _done, _resume = 0, None
    sampler: Any  # the DataLoader's, beside which this is mixed in

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": getattr(self.sampler, "epoch", 0), "batches_done": self._done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume = state

    def take_back(self, batches: int) -> None:
        """Count the last `batches` handed out as not trained on (a step cut short)."""
        self._done -= batches

    def _resumed(self, batches: Iterable) -> Iterator:
        # read at the first batch: Lightning sets the sampler's epoch after creating the iterator; a checkpoint
        # from the end of an epoch resumes at the next epoch and leaves nothing out
        resume, self._resume = self._resume, None
        skip = (
            resume["batches_done"] if resume and resume["epoch"] == getattr(self.sampler, "epoch", 0) else 0
        )
        self._done = 0
        for batch in batches:
            self._done += 1
            if self._done > skip:
                yield batch


class ResumableDataLoader(ResumableBatches, DataLoader):
    """A DataLoader whose training epoch resumes mid-way (batches left out are read, not trained on)."""

    def __iter__(self) -> Iterator:  # type: ignore[override]  # DataLoader's says _BaseDataLoaderIter
        return self._resumed(super().__iter__())


class TensorBatches(ResumableBatches):
    """Yields (images, labels) batches of N,H,W,C `images` in the same order as a DataLoader with the same sampler.

    No worker processes, no per-sample fetching or collation: one index_select per batch, on the GPU when the
    tensor lives there.
    """

    batch_sampler = None  # read by Lightning, as on a DataLoader with a plain sampler

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, sampler: SeededShuffle | None
    ):
        self.images, self.labels, self.batch_size = images, labels, batch_size
        # unshuffled: a SequentialSampler, as on a DataLoader, so Lightning's overfit_batches keeps this loader
        # (it rebuilds any loader with a `dataset` whose sampler is not sequential, and cannot rebuild this one)
        self.sampler = sampler if sampler is not None else SequentialSampler(range(len(labels)))

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    @property
    def dataset(self) -> torch.Tensor:
        """What Lightning sizes the split by, as a DataLoader's dataset (the batch-size finder stops at it)."""
        return self.labels

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._resumed(self._batches())

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = self.sampler.permutation() if isinstance(self.sampler, SeededShuffle) else torch.arange(n)
        order = order.to(self.images.device)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            # N,C,H,W views of channel-last pixels, as the DataLoader path's batches are: convolutions run faster
            yield self.images.index_select(0, idx).permute(0, 3, 1, 2), self.labels.index_select(0, idx)
