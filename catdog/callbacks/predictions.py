"""Per-image predictions of the held-out splits, for paired comparisons of runs (catdog.sweeps.significance).

`predictions_val.csv` holds the last validation epoch (the `val/acc` of metrics.json), `predictions_test.csv` the
test run (the best checkpoint with `test=true`; `python -m catdog.evaluate` writes the split it scores): one row
per photo, `path,label,predicted,correct,probability,p_<class>...`, `path` relative to `data.source`, `probability`
the model's probability of its predicted class and `p_<class>` every class's, in the model's class order.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from catdog.errors import CatdogError
from catdog.io import replace_atomic, write_csv
from catdog.runtime import probability_cells, probability_columns
from catdog.sweeps.job_files import predictions_file

log = logging.getLogger(__name__)
COLUMNS = ("path", "label", "predicted", "correct", "probability")


def shard_order(loader, n: int) -> torch.Tensor:
    """Positions in the split of the first `n` photos this process scored: its sampler's order (with DDP, Lightning's
    DistributedSampler: every world_size-th photo, padded by repeating the first ones so each process has as many)."""
    sampler = getattr(loader, "sampler", None)
    order = list(sampler) if sampler is not None else range(n)
    return torch.as_tensor(order[:n], dtype=torch.long)


def gather(positions: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor):
    """Every process's (positions, probabilities, labels), each photo once, in split order (DDP scores some photos
    twice, its padding); one process: as they are. Every process must call it: it is a collective."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return positions, probs, labels
    shards = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(shards, (positions, probs, labels))
    positions, probs, labels = (torch.cat(parts) for parts in zip(*shards))
    unique, first = np.unique(positions.numpy(), return_index=True)
    return torch.from_numpy(unique), probs[first], labels[first]


def write_predictions(
    path: Path, paths: list[str], classes: list[str], labels: np.ndarray, probs: np.ndarray
) -> None:
    """The per-photo CSV of one split: a row per photo (paths[i], with its label index and class probabilities)."""
    predicted = probs.argmax(1)
    rows = (
        (p, classes[y], classes[k], int(y == k), f"{row[k]:.6f}", *probability_cells(row))
        for p, y, k, row in zip(paths, labels.tolist(), predicted.tolist(), probs)
    )
    header = (*COLUMNS, *probability_columns(classes))
    replace_atomic(path, lambda f: write_csv(f, header, rows), binary=False)


def probabilities(outputs: torch.Tensor) -> torch.Tensor:
    """The class probabilities, on the CPU, of the logits a validation_step or test_step returned."""
    return outputs.detach().float().softmax(1).cpu()


class SavePredictions(pl.Callback):
    """Collects the logits that validation_step/test_step return and writes them once per split, at the end; with
    DDP, rank zero writes every process's share."""

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)
        self._batches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._last_val: tuple | None = None

    def _collect(self, outputs, batch) -> None:
        self._batches.append((probabilities(outputs), batch[1].cpu()))

    def _scored(self, loader) -> tuple | None:
        """(positions in the split, probabilities, labels) of what this process scored this epoch."""
        if not self._batches:
            return None
        probs, labels = torch.cat([p for p, _ in self._batches]), torch.cat([y for _, y in self._batches])
        return shard_order(loader, len(labels)), probs, labels

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._batches = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._collect(outputs, batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._last_val = self._scored(trainer.val_dataloaders)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._write(trainer, "val", self._last_val)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._batches = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._collect(outputs, batch)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._write(trainer, "test", self._scored(trainer.test_dataloaders))

    def _write(self, trainer: pl.Trainer, split: str, scored: tuple | None) -> None:
        if scored is None:  # nothing scored (no validation ran): the same on every process
            return
        positions, probs, labels = gather(*scored)
        if not trainer.is_global_zero:
            return
        datamodule = trainer.datamodule  # type: ignore[attr-defined]  # set by Lightning's data connector
        # the loaders go through each held-out split in its order; limit_*_batches scores a prefix of it
        index = datamodule.splits[split][positions.numpy()]
        try:
            paths = datamodule.arrays.photos["path"]
        except (CatdogError, OSError) as e:  # the run's results matter more than this record of them
            log.warning("Per-image %s predictions not saved: %s", split, e)
            return
        path = predictions_file(self.dirpath, split)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        photos = [paths[i] for i in index.tolist()]
        write_predictions(path, photos, datamodule.classes, labels.numpy(), probs.numpy())
        log.info("Per-image %s predictions written to %s", split, path)
