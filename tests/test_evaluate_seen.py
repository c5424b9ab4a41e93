"""evaluate's n_seen_in_training counts what the split counts as one photo: the training photos and their copies
re-saved in another format or in grayscale (pHash within NEAR_DISTANCE bits), not only byte-identical files."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import torch
from helpers import photo_like, tiny_datamodule, train_checkpoint
from test_evaluate import evaluate_in_process

from catdog.data.duplicates import NEAR_DISTANCE, copies_of

RESAVED = (".png", ".bmp", ".tiff", ".webp", ".gray.jpg")


def photos(root, seeds: range):
    """Photo-like 64 px JPEGs in Cat/ and Dog/ (labels by parity: nothing to learn, only to recognise)."""
    for seed in seeds:
        folder = root / ("Cat", "Dog")[seed % 2]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{seed}.jpg"), photo_like(64, 64, seed=seed))
    return root


@pytest.mark.slow
def test_resaved_and_grayscale_copies_of_training_photos_count_as_seen(tmp_path, caplog):
    source = photos(tmp_path / "train", range(24))
    ckpt = train_checkpoint(source, tmp_path)
    dm = tiny_datamodule(source, tmp_path / "cache")
    train = [dm.arrays.photos["path"][i] for i in np.unique(dm.splits["train"])]
    held_out = [dm.arrays.photos["path"][i] for i in dm.splits["val"]]
    assert len(train) == 16 and len(held_out) == 8
    # every photo re-saved in one of five ways, and 10 new photos
    scored = photos(tmp_path / "scored", range(100, 110))
    for k, path in enumerate(train + held_out):
        image = cv2.imread(str(source / path))
        kind = RESAVED[k % len(RESAVED)]
        if kind == ".gray.jpg":
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        cv2.imwrite(str(scored / path).replace(".jpg", kind), image)
    caplog.set_level(logging.WARNING)
    metrics = evaluate_in_process(ckpt, scored, tmp_path / "eval")
    assert (metrics["n_images"], metrics["n_seen_in_training"]) == (34, 16)
    assert "16 of the 34 photos scored were in the checkpoint's training split or are copies" in caplog.text
    # the checkpoint records the training photos' perceptual hashes beside their content hashes
    record = torch.load(ckpt, weights_only=True)["ImageDataModule"]
    assert len(record["train_phash_ids"]) == len(record["train_ids"]) == 16


def test_copies_are_found_through_chains_as_the_split_groups_them():
    reference = np.array([0b0], dtype=np.uint64)
    far = np.uint64((1 << 40) - 1)  # 40 bits from the reference
    # 3 bits from the reference; 6 bits from it, but 3 from the first (a chain); unrelated
    hashes = np.array([0b111, 0b111111, far], dtype=np.uint64)
    assert NEAR_DISTANCE == 4
    assert copies_of(hashes, reference).tolist() == [True, True, False]
