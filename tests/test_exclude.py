"""`data.exclude`: flagged photos out of every split, by content (renaming or re-zipping brings none back), in
splits.csv, metrics.json and the checkpoint's record; and the clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import read_csv, tiny_datamodule, tiny_overrides, train_in_process, write_class_folders, zip_tree

from catdog.audit.scores import COLUMNS
from catdog.data.settings import SplitSettings
from catdog.data.split import assign_splits
from catdog.errors import CatdogError


def audit_csv(path, dm, flagged: dict[str, str]):
    """An audit.csv of dm's photos: `flagged` maps a path to its issue ("" = the user cleared it)."""
    photos = dm.arrays.photos
    lines = [",".join(COLUMNS)]
    for p, label, sha in zip(photos["path"], photos["label"], photos["sha256"]):
        if p in flagged:
            lines.append(f"{p},{label},{label},0.1,0.5,,{flagged[p]},{sha}")
    path.write_text("\n".join(lines) + "\n")
    return path


def splits(dm) -> dict[str, str]:
    return {p: s for p, _, s in dm.split_rows}


@pytest.fixture
def folder(tmp_path):
    return write_class_folders(tmp_path / "PetImages", per_class=12)


def test_flagged_photos_are_excluded_by_content_even_renamed_and_zipped(folder, tmp_path):
    plain = tiny_datamodule(folder, tmp_path / "cache")
    flagged = {"Cat/3.jpg": "label", "Dog/5.jpg": "outlier", "Dog/7.jpg": ""}  # Dog/7 kept by the user
    exclude = audit_csv(tmp_path / "audit.csv", plain, flagged)
    dm = tiny_datamodule(folder, tmp_path / "cache", exclude=str(exclude))
    before, after = splits(plain), splits(dm)
    assert {p for p, s in after.items() if s == "excluded"} == {"Cat/3.jpg", "Dog/5.jpg"}
    assert all(after[p] == before[p] for p in before if p not in ("Cat/3.jpg", "Dog/5.jpg")), "no other moves"
    assert dm.split_file.parent.name.startswith("seed0-val0.25-test0.0-exclude")
    assert dm.exclusion_metrics() == {"data/n_excluded": 2}
    assert len(dm.state_dict()["excluded_ids"]) == 2

    # renamed, then zipped: the same photos stay out
    (folder / "Cat" / "3.jpg").rename(folder / "Cat" / "renamed.jpg")
    (folder / "Dog" / "5.jpg").rename(folder / "Dog" / "other.jpg")
    archive = zip_tree(folder, tmp_path / "PetImages.zip")
    moved = tiny_datamodule(archive, tmp_path / "cache2", exclude=str(exclude))
    excluded = {p for p, s in splits(moved).items() if s == "excluded"}
    assert excluded == {"PetImages/Cat/renamed.jpg", "PetImages/Dog/other.jpg"}


def test_a_text_file_of_paths_excludes_those_photos(folder, tmp_path):
    listed = tmp_path / "bad.txt"
    listed.write_text("# photos to leave out\nCat/0.jpg\n\nDog/11.jpg\n")
    dm = tiny_datamodule(folder, tmp_path / "cache", exclude=str(listed))
    assert sorted(p for p, s in splits(dm).items() if s == "excluded") == ["Cat/0.jpg", "Dog/11.jpg"]


def test_exclusion_moves_no_other_photo():
    groups = [f"g{i}" for i in range(200)]
    labels = np.arange(200) % 2
    exclude = np.zeros(200, dtype=bool)
    exclude[[3, 50, 51, 120]] = True
    for folds, fold in ((None, 0), (5, 2)):
        plain = assign_splits(
            groups, labels, SplitSettings(val_fraction=0.2, test_fraction=0.1, seed=0, folds=folds, fold=fold)
        )
        left_out = assign_splits(
            groups,
            labels,
            SplitSettings(val_fraction=0.2, test_fraction=0.1, seed=0, folds=folds, fold=fold),
            exclude=exclude,
        )
        assert (left_out[exclude] == 3).all() and (left_out[~exclude] == plain[~exclude]).all()


def test_exclusion_errors_are_one_line(folder, tmp_path):
    with pytest.raises(CatdogError, match=r"^data.exclude=.*nope.csv: no such file\. Give an audit.csv"):
        tiny_datamodule(folder, tmp_path / "cache", exclude=str(tmp_path / "nope.csv"))
    other = tmp_path / "other.txt"
    other.write_text("Cat/999.jpg\n" + "0" * 64 + "\n")
    with pytest.raises(CatdogError, match=r"^data.exclude=.*other.txt: none of the 2 photos it names is in"):
        tiny_datamodule(folder, tmp_path / "cache", exclude=str(other))


@pytest.mark.slow
def test_a_run_states_its_exclusions_in_metrics_splits_and_checkpoint(folder, tmp_path):
    listed = tmp_path / "bad.txt"
    listed.write_text("Cat/0.jpg\nDog/1.jpg\nDog/2.jpg\n")
    metrics = train_in_process(*tiny_overrides(folder, tmp_path), f"data.exclude={listed}")
    run = tmp_path / "run"
    assert metrics["data/n_excluded"] == 3
    assert json.loads((run / "metrics.json").read_text())["data/n_excluded"] == 3
    rows = read_csv(run / "splits.csv")
    assert sorted(r["path"] for r in rows if r["split"] == "excluded") == [
        "Cat/0.jpg",
        "Dog/1.jpg",
        "Dog/2.jpg",
    ]
    ckpt = torch.load(next((run / "checkpoints").glob("epoch*.ckpt")), weights_only=True)
    record = ckpt["ImageDataModule"]
    assert record["exclude"] == str(listed) and len(record["excluded_ids"]) == 3


@pytest.mark.slow
def test_evaluate_scores_without_the_excluded_photos_and_with_them(folder, tmp_path):
    from test_evaluate import evaluate_in_process

    train_in_process(*tiny_overrides(folder, tmp_path))
    ckpt = next((tmp_path / "run" / "checkpoints").glob("epoch*.ckpt"))
    everything = evaluate_in_process(ckpt, folder, tmp_path / "all")
    listed = tmp_path / "bad.txt"
    listed.write_text("Cat/0.jpg\nDog/1.jpg\n")
    without = evaluate_in_process(ckpt, folder, tmp_path / "without", f"data.exclude={listed}")
    assert everything["n_images"] == 24 and "n_excluded" not in everything
    assert without["n_images"] == 22 and without["n_excluded"] == 2
    assert without["all/acc_all"] == pytest.approx(everything["all/acc"])
