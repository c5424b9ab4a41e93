"""Evaluation under DDP without its padding: Lightning's DistributedSampler hands process r the photos r, r + W,
r + 2W, ... of a split and pads the shares to one length by repeating the first photos, so a split of 27 photos on
2 processes is scored as 28. Metrics count each photo once (as predictions_<split>.csv lists it)."""

from __future__ import annotations

import torch
from torch.utils.data.distributed import DistributedSampler


def real_photos(loader, batch_idx: int, count: int) -> int:
    """How many of the `count` photos of batch `batch_idx` (in this process's share of `loader`) are photos of the
    split, not padding: the padding is the end of a share, so these are the batch's first ones. Without a padding
    DistributedSampler, all of them."""
    sampler = getattr(loader, "sampler", None)
    if not isinstance(sampler, DistributedSampler) or sampler.drop_last:
        return count
    own = len(range(sampler.rank, len(sampler.dataset), sampler.num_replicas))  # type: ignore[arg-type]  # a sized dataset
    return max(0, min(count, own - batch_idx * loader.batch_size))


def split_order(gathered: torch.Tensor, n: int) -> torch.Tensor:
    """all_gather's (processes, photos, ...) of what each process scored, as the split's first photos in its order,
    each once: process r's k-th photo is the split's photo r + k * processes; positions from `n` on are padding."""
    return gathered.transpose(0, 1).flatten(0, 1)[:n]
