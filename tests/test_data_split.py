"""Balancing and the stratified, seeded split stored beside the cache."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import write_class_folders

from catdog.data import ImageDataModule
from catdog.data.split import balance, class_weights, stratified_split
from catdog.errors import CatdogError

LABELS = np.array([0] * 30 + [1] * 10 + [2] * 20)


def test_balance_modes_give_equal_class_counts():
    idx = np.arange(len(LABELS))
    under = balance(idx, LABELS, "undersample", seed=1)
    over = balance(idx, LABELS, "oversample", seed=1)
    assert np.bincount(LABELS[under]).tolist() == [10, 10, 10] and len(set(under)) == 30
    assert np.bincount(LABELS[over]).tolist() == [30, 30, 30] and set(over) == set(idx)
    for mode in ("none", "class_weight"):
        np.testing.assert_array_equal(balance(idx, LABELS, mode), idx)
    np.testing.assert_array_equal(balance(idx, LABELS, "undersample", seed=1), under)  # seeded


def test_class_weights_are_inverse_frequency_with_mean_one_per_sample():
    w = class_weights(LABELS, 3)
    assert w[1] == pytest.approx(3 * w[0]) and w[2] == pytest.approx(1.5 * w[0])
    assert w[LABELS].mean() == pytest.approx(1.0)


def test_stratified_split_keeps_class_proportions_and_is_seeded():
    parts = stratified_split(LABELS, 0.2, 0.1, seed=5)
    assert np.bincount(LABELS[parts["val"]]).tolist() == [6, 2, 4]
    assert np.bincount(LABELS[parts["test"]]).tolist() == [3, 1, 2]
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(len(LABELS)))
    again = stratified_split(LABELS, 0.2, 0.1, seed=5)
    other = stratified_split(LABELS, 0.2, 0.1, seed=6)
    np.testing.assert_array_equal(parts["val"], again["val"])
    assert set(parts["val"]) != set(other["val"])


def datamodule(source, cache, **kw):
    dm = ImageDataModule(
        str(source), resolution=16, cache_dir=str(cache), val_fraction=0.25, progress=False, **kw
    )
    dm.setup("fit")
    return dm


def test_datamodule_split_is_stored_identical_disjoint_and_stratified(tmp_path):
    source = write_class_folders(tmp_path / "pets", per_class=12)
    for i in range(12, 20):  # imbalanced: 12 cats, 20 dogs
        (source / "Dog" / f"{i}.jpg").write_bytes((source / "Dog" / "0.jpg").read_bytes())
    a = datamodule(source, tmp_path / "cache", test_fraction=0.25)
    stored = list(a.arrays.directory.glob("split-seed0-*.npy"))
    assert len(stored) == 1
    b = datamodule(source, tmp_path / "cache", test_fraction=0.25)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(a.splits[name], b.splits[name])
    train, val, test = (set(a.splits[k].tolist()) for k in ("train", "val", "test"))
    assert not (train & val or train & test or val & test) and len(train | val | test) == 32
    labels = a.arrays.labels
    assert np.bincount(labels[a.splits["val"]]).tolist() == [3, 5]
    assert np.bincount(labels[a.splits["test"]]).tolist() == [3, 5]
    batch_x, batch_y = next(iter(a.val_dataloader()))
    assert (
        batch_x.shape[1:] == (1, 16, 16)
        and batch_y.tolist() == labels[a.splits["val"][: len(batch_y)]].tolist()
    )

    under = datamodule(source, tmp_path / "cache", test_fraction=0.25, balance="undersample")
    np.testing.assert_array_equal(under.splits["val"], a.splits["val"])
    assert np.bincount(labels[under.splits["train"]]).tolist() == [6, 6]
    weighted = datamodule(source, tmp_path / "cache", test_fraction=0.25, balance="class_weight")
    assert weighted.class_weights() == pytest.approx([16 / 12, 16 / 20])
    assert a.class_weights() is None


def test_bad_split_settings_name_the_key(image_folder, tmp_path):
    with pytest.raises(CatdogError, match="data.balance='sometimes' is invalid"):
        ImageDataModule(str(image_folder), balance="sometimes")
    with pytest.raises(CatdogError, match="data.val_fraction"):
        ImageDataModule(str(image_folder), val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(CatdogError, match="data.test_fraction=0"):
        datamodule(image_folder, tmp_path / "cache").test_dataloader()
