"""Splits as a seeded function of photo identity, folds, the class-interleaved order, and balancing."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import write_class_folders

from catdog.data import ImageDataModule
from catdog.data.settings import DataSettings, SplitSettings
from catdog.data.split import SPLITS, assign_splits, balance, class_weights, interleave, split_order
from catdog.errors import CatdogError

LABELS = np.array([0] * 30 + [1] * 10 + [2] * 20)


def photos(n_per_class=(600, 300, 100), seed=0):
    """Fabricated identities (hex keys) and labels, in class-sorted order."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(n_per_class)), n_per_class)
    keys = [f"{x:064x}" for x in rng.integers(0, 2**62, len(labels))]
    return keys, labels


def by_key(keys, codes):
    return dict(zip(keys, (SPLITS[c] for c in codes)))


def test_balance_modes_give_equal_class_counts():
    idx = np.arange(len(LABELS))
    under = balance(idx, LABELS, "undersample", seed=1)
    over = balance(idx, LABELS, "oversample", seed=1)
    assert np.bincount(LABELS[under]).tolist() == [10, 10, 10] and len(set(under)) == 30
    assert np.bincount(LABELS[over]).tolist() == [30, 30, 30] and set(over) == set(idx)
    for mode in ("none", "class_weight"):
        np.testing.assert_array_equal(balance(idx, LABELS, mode), idx)
    np.testing.assert_array_equal(balance(idx, LABELS, "undersample", seed=1), under)  # seeded
    assert sorted(LABELS[under[:3]]) == [0, 1, 2]  # balanced and still interleaved


def test_class_weights_are_inverse_frequency_with_mean_one_per_sample():
    w = class_weights(LABELS, 3)
    assert w[1] == pytest.approx(3 * w[0]) and w[2] == pytest.approx(1.5 * w[0])
    assert w[LABELS].mean() == pytest.approx(1.0)


def test_split_follows_identity_not_position_and_adding_moves_nothing():
    keys, labels = photos()
    codes = assign_splits(keys, labels, SplitSettings(val_fraction=0.2, test_fraction=0.1, seed=5))
    split = by_key(keys, codes)
    order = np.random.default_rng(1).permutation(len(keys))
    shuffled = assign_splits(
        [keys[i] for i in order], labels[order], SplitSettings(val_fraction=0.2, test_fraction=0.1, seed=5)
    )
    assert by_key([keys[i] for i in order], shuffled) == split
    # one more photo per class, and one photo fewer: no other photo moves
    more = assign_splits(
        [*keys, "f" * 64, "e" * 64, "d" * 64],
        np.r_[labels, 0, 1, 2],
        SplitSettings(val_fraction=0.2, test_fraction=0.1, seed=5),
    )
    assert {
        k: v for k, v in by_key([*keys, "f" * 64, "e" * 64, "d" * 64], more).items() if k in split
    } == split
    fewer = assign_splits(keys[1:], labels[1:], SplitSettings(val_fraction=0.2, test_fraction=0.1, seed=5))
    assert by_key(keys[1:], fewer) == {k: v for k, v in split.items() if k != keys[0]}
    # every class gets its share (in expectation: binomial, 3 standard deviations)
    for c, n in enumerate((600, 300, 100)):
        for name, fraction in (("val", 0.2), ("test", 0.1)):
            got = np.sum(codes[labels == c] == SPLITS.index(name))
            assert abs(got - n * fraction) <= 3 * np.sqrt(n * fraction * (1 - fraction)), (c, name, got)
    other = by_key(
        keys, assign_splits(keys, labels, SplitSettings(val_fraction=0.2, test_fraction=0.1, seed=6))
    )
    assert sum(split[k] != other[k] for k in keys) > 300  # the seed draws another split


def test_copies_share_a_split_and_conflicts_are_excluded_unless_kept():
    keys, labels = photos((50, 50))
    groups = list(keys)
    groups[1] = groups[0]  # a copy of photo 0 (same class)
    groups[60] = groups[2]  # a copy of photo 2 filed under the other class
    codes = assign_splits(groups, labels, SplitSettings(val_fraction=0.3, seed=0))
    assert codes[1] == codes[0]
    assert SPLITS[codes[2]] == SPLITS[codes[60]] == "excluded"
    assert np.sum(codes == SPLITS.index("excluded")) == 2
    kept = assign_splits(groups, labels, SplitSettings(val_fraction=0.3, seed=0, label_conflicts="keep"))
    assert kept[2] == kept[60] and SPLITS[kept[2]] != "excluded"


def test_folds_partition_the_non_test_photos_and_keep_test_fixed():
    keys, labels = photos()
    runs = [
        assign_splits(
            keys, labels, SplitSettings(val_fraction=0.1, test_fraction=0.1, seed=3, folds=5, fold=i)
        )
        for i in range(5)
    ]
    test = [set(np.flatnonzero(c == SPLITS.index("test"))) for c in runs]
    assert all(t == test[0] for t in test) and len(test[0]) > 50
    vals = [set(np.flatnonzero(c == SPLITS.index("val"))) for c in runs]
    assert sum(map(len, vals)) == len(set().union(*vals)) == len(keys) - len(test[0])
    assert all(150 < len(v) < 220 for v in vals)  # a fifth of the 900 non-test photos each
    for c, v in zip(runs, vals):
        assert set(np.flatnonzero(c == SPLITS.index("train"))) == set(range(len(keys))) - v - test[0]


def test_every_class_gets_a_val_and_test_photo_on_tiny_data():
    keys, labels = photos((4, 4, 4))
    for seed in range(20):
        codes = assign_splits(keys, labels, SplitSettings(val_fraction=0.1, test_fraction=0.1, seed=seed))
        for c in range(3):
            assert {"train", "val", "test"} <= {SPLITS[s] for s in codes[labels == c]}, seed


@pytest.mark.parametrize("counts", [(300, 100, 50), (7, 1, 2, 40)])
def test_interleaved_order_makes_every_prefix_stratified(counts):
    labels = np.repeat(np.arange(len(counts)), counts)
    ordered = labels[interleave(labels)]
    share = np.array(counts) / len(labels)
    for k in range(1, len(labels) + 1):
        assert np.all(np.abs(np.bincount(ordered[:k], minlength=len(counts)) - k * share) <= 1), k


def test_split_order_is_fixed_by_content_not_listing():
    keys, labels = photos((40, 20))
    idx = np.arange(len(keys))
    first = [keys[i] for i in split_order(idx, labels, keys, seed=0)]
    order = np.random.default_rng(2).permutation(len(keys))
    again = split_order(idx, labels[order], [keys[i] for i in order], seed=0)
    assert [keys[order[i]] for i in again] == first


def datamodule(source, cache, **kw):
    dm = ImageDataModule(
        DataSettings.from_config(
            dict(
                source=str(source),
                resolution=16,
                cache_dir=str(cache),
                val_fraction=0.25,
                progress=False,
                **kw,
            )
        )
    )
    dm.setup("fit")
    return dm


def test_datamodule_split_is_stored_disjoint_and_listed(tmp_path):
    source = write_class_folders(tmp_path / "pets", per_class=16)
    a = datamodule(source, tmp_path / "cache", test_fraction=0.25)
    assert (
        a.split_file.relative_to(a.arrays.directory).as_posix() == "splits/seed0-val0.25-test0.25/splits.csv"
    )
    rows = a.split_file.read_text().splitlines()
    assert (
        rows[0] == "path,label,split"
        and len(rows) == 33
        and rows[1] == "Cat/0.jpg,Cat," + rows[1].split(",")[2]
    )
    paths = a.arrays.photos["path"]
    listed = {r.split(",")[0]: r.split(",")[2] for r in rows[1:]}
    for name in ("train", "val", "test"):
        assert {paths[i] for i in a.splits[name]} == {p for p, s in listed.items() if s == name}
    train, val, test = (set(a.splits[k].tolist()) for k in ("train", "val", "test"))
    assert not (train & val or train & test or val & test) and len(train | val | test) == 32
    b = datamodule(source, tmp_path / "cache", test_fraction=0.25)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(a.splits[name], b.splits[name])
    batch_x, batch_y = next(iter(a.val_dataloader()))
    labels = a.arrays.labels
    assert (
        batch_x.shape[1:] == (1, 16, 16)
        and batch_y.tolist() == labels[a.splits["val"][: len(batch_y)]].tolist()
    )

    under = datamodule(source, tmp_path / "cache", test_fraction=0.25, balance="undersample")
    np.testing.assert_array_equal(under.splits["val"], a.splits["val"])
    n = np.bincount(labels[a.splits["train"]]).min()
    assert np.bincount(labels[under.splits["train"]]).tolist() == [n, n]
    weighted = datamodule(source, tmp_path / "cache", test_fraction=0.25, balance="class_weight")
    counts = np.bincount(labels[a.splits["train"]])
    assert weighted.class_weights() == pytest.approx((counts.sum() / (2 * counts)).tolist())
    assert a.class_weights() is None


def test_bad_split_settings_name_the_key(image_folder, tmp_path):
    with pytest.raises(CatdogError, match="data.balance='sometimes' is invalid"):
        DataSettings.from_config(dict(source=str(image_folder), balance="sometimes"))
    with pytest.raises(CatdogError, match="data.val_fraction"):
        DataSettings.from_config(dict(source=str(image_folder), val_fraction=0.6, test_fraction=0.5))
    with pytest.raises(CatdogError, match=r"data.fold=5 is invalid: expected one of 0..4"):
        DataSettings.from_config(dict(source=str(image_folder), folds=5, fold=5))
    with pytest.raises(CatdogError, match="data.folds=1"):
        DataSettings.from_config(dict(source=str(image_folder), folds=1))
    with pytest.raises(CatdogError, match="data.test_fraction=0"):
        datamodule(image_folder, tmp_path / "cache").test_dataloader()
