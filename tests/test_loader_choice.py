"""data.loader=auto: the whole split as one tensor where it fits the device's free memory with room to spare, else
the memory-mapped DataLoader, each choice logged; an explicit data.loader=tensor that cannot fit is one error."""

from __future__ import annotations

import logging

import pytest
import torch
from helpers import tiny_datamodule

from catdog.data.datamodule import ResumableDataLoader
from catdog.data.loaders import TensorBatches, available_memory, choose_loader
from catdog.errors import CatdogError

GB = 10**9


def test_the_choice_follows_the_free_memory_with_half_of_it_to_spare(caplog):
    caplog.set_level(logging.INFO, logger="catdog.data.loaders")
    assert choose_loader("auto", "train", 4 * GB, 8 * GB, "cpu") == "tensor"
    assert choose_loader("auto", "train", 4 * GB + 1, 8 * GB, "cpu") == "dataloader"
    assert choose_loader("dataloader", "train", 1, 8 * GB, "cpu") == "dataloader"
    assert choose_loader("tensor", "val", 1 * GB, 8 * GB, "cuda:0") == "tensor"
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "data.loader=auto: the whole split as one tensor for the train split (4.00 GB, within 50% of the 8.00 GB "
        "free on cpu)",
        "data.loader=auto: the memory-mapped DataLoader for the train split (4.00 GB, more than 50% of the 8.00 GB "
        "free on cpu)",
    ]
    with pytest.raises(CatdogError) as error:
        choose_loader("tensor", "train", 27_600_000_000, 24 * GB, "cpu")
    assert str(error.value) == (
        "data.loader=tensor: the train split as one tensor takes 27.60 GB, more than 50% of the 24.00 GB free on "
        "cpu. Use data.loader=auto (the memory-mapped loader where the tensor does not fit) or data.loader=dataloader."
    )


def test_a_real_split_is_measured_and_a_budget_smaller_than_it_picks_the_memory_mapped_loader(
    image_folder, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="catdog.data.loaders")
    dm = tiny_datamodule(image_folder, tmp_path / "cache", loader="auto")
    train = len(dm.splits["train"])
    assert dm.tensor_bytes("train") == train * (16 * 16 * 3 + 8)
    # this machine's free memory holds a few photos easily: the tensor path, logged
    assert 0 < dm.tensor_bytes("train") < available_memory(torch.device("cpu")) / 2
    assert isinstance(dm.train_dataloader(), TensorBatches)
    assert "the whole split as one tensor for the train split" in caplog.text
    # a budget one byte short of twice the split: the memory-mapped loader, or the error for an explicit tensor
    short = 2 * dm.tensor_bytes("train") - 1
    assert choose_loader("auto", "train", dm.tensor_bytes("train"), short, "cpu") == "dataloader"
    with pytest.raises(
        CatdogError, match=r"^data.loader=tensor: the train split as one tensor takes 0.00 GB"
    ):
        choose_loader("tensor", "train", dm.tensor_bytes("train"), short, "cpu")
    assert isinstance(
        tiny_datamodule(image_folder, tmp_path / "cache").train_dataloader(), ResumableDataLoader
    )
