"""Photos, not positions: duplicates and label conflicts, identical splits from any container and member order,
and val/test orders whose first batches are a fair sample."""

from __future__ import annotations

import json
import shutil
import tarfile
from functools import partial

import cv2
import numpy as np
import pytest
import torch
from helpers import make_image, photo_like, quiet_trainer, write_class_folders, zip_tree

from catdog.data import ImageDataModule, dataset
from catdog.data.dataset import prepare_dataset, summarize
from catdog.data.duplicates import perceptual_hash
from catdog.data.settings import DataSettings
from catdog.models.classifier import ImageClassifier


def jpeg(path, img, quality=95):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, quality])


def photo_folders(root, counts=(12, 12)):
    """Distinct photo-like images, class-sorted: root/PetImages/<class>/<i>.jpg."""
    for c, n in enumerate(counts):
        for i in range(n):
            jpeg(root / "PetImages" / f"c{c}" / f"{i}.jpg", photo_like(160, 120, 100 * c + i))
    return root


@pytest.fixture
def with_copies(tmp_path):
    """Cats and dogs plus: a byte copy, a re-encode at quality 50, a half-size copy, and a cat filed as a dog."""
    root = photo_folders(tmp_path / "src")
    cats, dogs = root / "PetImages" / "c0", root / "PetImages" / "c1"
    original = photo_like(160, 120, 0)
    shutil.copy(cats / "0.jpg", cats / "byte_copy.jpg")
    jpeg(cats / "quality50.jpg", original, quality=50)
    jpeg(cats / "half_size.jpg", cv2.resize(original, (80, 60), interpolation=cv2.INTER_AREA))
    shutil.copy(cats / "5.jpg", dogs / "cat_as_dog.jpg")
    return root


def imbalanced(root, counts):
    """Distinct striped images, `counts[c]` in class folder c<c>: a class-sorted listing."""
    for c, n in enumerate(counts):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(root / f"c{c}" / f"{i}.jpg"), make_image(c % 2, seed=1000 * c + i))
    return root


def module(source, cache, **kw):
    settings = {"resolution": 16, "channels": 3, "val_fraction": 0.3, "batch_size": 8, "num_workers": 1, **kw}
    dm = ImageDataModule(
        DataSettings.from_config(dict(source=str(source), cache_dir=str(cache), progress=False, **settings))
    )
    dm.setup("fit")
    return dm


def split_of(dm) -> dict[str, str]:
    rows = dm.split_file.read_text().splitlines()[1:]
    return {r.split(",")[0]: r.split(",")[2] for r in rows}


def test_copies_are_one_group_in_one_split_and_conflicts_are_excluded(with_copies, tmp_path):
    dm = module(with_copies, tmp_path / "cache")
    report = dm.arrays.report
    groups = {tuple(g["paths"]): g["kind"] for g in report["duplicates"]}
    copies = (
        "PetImages/c0/0.jpg",
        "PetImages/c0/byte_copy.jpg",
        "PetImages/c0/half_size.jpg",
        "PetImages/c0/quality50.jpg",
    )
    assert groups == {copies: "near", ("PetImages/c0/5.jpg", "PetImages/c1/cat_as_dog.jpg"): "exact"}
    assert report["label_conflicts"] == [
        {"paths": ["PetImages/c0/5.jpg", "PetImages/c1/cat_as_dog.jpg"], "labels": ["c0", "c1"]}
    ]
    split = split_of(dm)
    assert len({split[p] for p in copies}) == 1 and split[copies[0]] != "excluded"
    assert split["PetImages/c0/5.jpg"] == split["PetImages/c1/cat_as_dog.jpg"] == "excluded"
    assert sorted(p for p, s in split.items() if s == "excluded") == sorted(
        report["label_conflicts"][0]["paths"]
    )
    in_use = {dm.arrays.photos["path"][i] for k in ("train", "val", "test") for i in dm.splits[k]}
    assert "PetImages/c0/5.jpg" not in in_use and len(in_use) == 28 - 2
    text = summarize(report)
    assert "1 groups of identical files (2 photos), 1 groups of near duplicates (pHash within 4 bits)" in text
    assert "label conflicts: 1 groups (2 photos; excluded" in text

    kept = module(with_copies, tmp_path / "cache", label_conflicts="keep")
    assert kept.split_file.parent.name.endswith("-conflicts-keep")
    kept_split = split_of(kept)
    assert kept_split["PetImages/c0/5.jpg"] == kept_split["PetImages/c1/cat_as_dog.jpg"] != "excluded"


def test_folder_zip_and_tar_in_any_member_order_give_identical_split_files(tmp_path):
    root = photo_folders(tmp_path / "folder", counts=(15, 9))
    zipped = zip_tree(root / "PetImages", tmp_path / "pets.zip", seed=3)
    names = sorted(p for p in (root / "PetImages").rglob("*.jpg"))
    with tarfile.open(tmp_path / "pets.tar", "w") as tf:
        for i in np.random.default_rng(4).permutation(len(names)):
            tf.add(names[i], arcname=names[i].relative_to(root).as_posix())
    files = [
        module(s, tmp_path / "cache", test_fraction=0.2).split_file
        for s in (root, zipped, tmp_path / "pets.tar")
    ]
    assert len({f.parent for f in files}) == 3
    texts = [f.read_text() for f in files]
    assert texts[0] == texts[1] == texts[2]
    assert texts[0].splitlines()[1].startswith("PetImages/c0/0.jpg,c0,")
    assert {r.split(",")[2] for r in texts[0].splitlines()[1:]} == {"train", "val", "test"}


def test_adding_or_skipping_a_file_moves_no_other_photo(tmp_path):
    root = photo_folders(tmp_path / "src", counts=(20, 20))
    before = split_of(module(root, tmp_path / "cache"))
    jpeg(root / "PetImages" / "c1" / "new.jpg", photo_like(160, 120, 999))
    (root / "PetImages" / "c0" / "3.jpg").write_bytes(b"broken")  # now skipped
    after = split_of(module(root, tmp_path / "cache"))
    assert set(after) == set(before) - {"PetImages/c0/3.jpg"} | {"PetImages/c1/new.jpg"}
    assert {p: s for p, s in after.items() if p in before} == {
        p: s for p, s in before.items() if p != "PetImages/c0/3.jpg"
    }


@pytest.mark.parametrize("loader", ["dataloader", "tensor"])
def test_first_val_batch_of_a_class_sorted_source_holds_every_class_in_proportion(tmp_path, loader):
    source = imbalanced(tmp_path / "pets", (80, 40, 20))
    dm = module(source, tmp_path / "cache", loader=loader, val_fraction=0.5)
    labels = dm.arrays.labels[dm.splits["val"]]
    share = np.bincount(labels, minlength=3) / len(labels)
    _, y = next(iter(dm.val_dataloader()))
    assert np.all(np.abs(np.bincount(y.numpy(), minlength=3) - 8 * share) <= 1), (y, share)


class Constant(ImageClassifier):
    """Predicts class 0 for every image, whatever it is."""

    def predict_logits(self, x):
        return torch.tensor([[1.0, 0.0]], device=x.device).expand(len(x), 2)


def test_a_constant_predictors_two_batch_val_accuracy_is_near_the_class_share(tmp_path):
    source = imbalanced(tmp_path / "pets", (60, 100))
    dm = module(source, tmp_path / "cache", val_fraction=0.4)
    model = Constant(3, 16, classes=dm.classes, **dict(channels=[4], kernel=3, hidden=[]))
    trainer = quiet_trainer(limit_val_batches=2)
    metrics = trainer.validate(model, datamodule=dm, verbose=False)[0]
    val_labels = dm.arrays.labels[dm.splits["val"]]
    cat_share = float(np.mean(val_labels == 0))
    assert metrics["val/n_images"] == 16 < len(val_labels)
    assert abs(metrics["val/acc"] - cat_share) <= 1 / 16 + 1e-6 and 0.2 < metrics["val/acc"] < 0.6
    assert dm.partial_evaluation(metrics) == [
        f"val/acc rests on 16 of the {len(val_labels)} val images "
        "(trainer.limit_val_batches, fast_dev_run or overfit_batches): not a result."
    ]


class Recorder(ImageClassifier):
    """Keeps the labels of every training batch."""

    def training_step(self, batch, batch_idx):
        self.seen.append(batch[1].tolist())
        return super().training_step(batch, batch_idx)


@pytest.mark.parametrize("loader", ["dataloader", "tensor"])
def test_overfit_batches_hold_every_class_and_repeat(tmp_path, loader):
    source = write_class_folders(tmp_path / "pets", per_class=30)
    dm = module(source, tmp_path / "cache", loader=loader)
    model = Recorder(
        3,
        16,
        classes=dm.classes,
        **dict(channels=[4], kernel=3, hidden=[]),
        optimizer=partial(torch.optim.Adam, lr=0.01),
    )
    model.seen = []
    trainer = quiet_trainer(overfit_batches=2, max_epochs=2)
    trainer.fit(model, datamodule=dm)
    assert len(model.seen) == 4 and model.seen[:2] == model.seen[2:]
    assert all(set(batch) == {0, 1} for batch in model.seen)


def test_checkpoint_records_the_training_data_and_its_photos(with_copies, tmp_path):
    dm = module(with_copies, tmp_path / "cache", test_fraction=0.2)
    state = dm.state_dict()
    assert state["source"] == str(with_copies.resolve()) and state["test_fraction"] == 0.2
    shas = {dm.arrays.photos["sha256"][i] for i in dm.splits["train"]}
    ids = state["train_ids"]
    assert ids.dtype == torch.int64 and len(ids) == len(shas) and json.dumps(state["seed"]) == "0"
    assert set(ids.tolist()) == {int(np.uint64(int(s[:16], 16)).astype(np.int64)) for s in shas}


@pytest.mark.parametrize("resolution,channels", [(16, 3), (32, 1), (64, 3)])
def test_copies_are_found_whichever_image_is_hashed(with_copies, tmp_path, resolution, channels):
    """Below 32 px the decoded photo is hashed, from 32 px on the network input: both find the same copies."""
    arrays = prepare_dataset(
        DataSettings.from_config(
            dict(
                source=str(with_copies),
                resolution=resolution,
                channels=channels,
                cache_dir=str(tmp_path / "cache"),
                progress=False,
            )
        )
    )
    groups = {tuple(g["paths"]): g["kind"] for g in arrays.report["duplicates"]}
    assert groups == {
        (
            "PetImages/c0/0.jpg",
            "PetImages/c0/byte_copy.jpg",
            "PetImages/c0/half_size.jpg",
            "PetImages/c0/quality50.jpg",
        ): "near",
        ("PetImages/c0/5.jpg", "PetImages/c1/cat_as_dog.jpg"): "exact",
    }


def test_the_perceptual_hash_thresholds_at_the_median():
    rng = np.random.default_rng(0)
    for _ in range(20):
        img = rng.integers(0, 256, (40, 48), dtype=np.uint8)
        low = cv2.dct(cv2.resize(img, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32))[:8, :8]
        expected = int(np.packbits((low > np.median(low)).ravel()).view(">u8")[0])
        assert perceptual_hash(img) == expected == perceptual_hash(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))


def test_the_near_duplicate_threshold_is_part_of_the_cache(with_copies, tmp_path, monkeypatch):
    first = prepare_dataset(
        DataSettings.from_config(
            dict(source=str(with_copies), resolution=16, cache_dir=str(tmp_path / "cache"), progress=False)
        )
    )
    monkeypatch.setattr(dataset, "NEAR_DISTANCE", -1)  # exact copies only
    strict = prepare_dataset(
        DataSettings.from_config(
            dict(source=str(with_copies), resolution=16, cache_dir=str(tmp_path / "cache"), progress=False)
        )
    )
    assert strict.directory != first.directory and strict.report["near_duplicate_distance"] == -1
    assert [g["kind"] for g in strict.report["duplicates"]] == ["exact", "exact"]


def test_resuming_on_another_split_warns_that_val_holds_training_photos(tmp_path, caplog):
    source = write_class_folders(tmp_path / "pets", per_class=20)
    trained = module(source, tmp_path / "cache", seed=0)
    same, other = module(source, tmp_path / "cache", seed=0), module(source, tmp_path / "cache", seed=1)
    same.load_state_dict(trained.state_dict())
    assert "were in the training split of the checkpoint" not in caplog.text
    other.load_state_dict(trained.state_dict())
    train = {trained.arrays.photos["path"][i] for i in trained.splits["train"]}
    held_out = {other.arrays.photos["path"][i] for k in ("val", "test") for i in other.splits[k]}
    assert (
        f"{len(train & held_out)} val/test photos were in the training split of the checkpoint" in caplog.text
    )
