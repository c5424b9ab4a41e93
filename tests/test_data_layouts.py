"""Sources that give their own splits (split folders in a folder, zip or tar; a labels.csv's split column), label
files, and the file-name rule: real generated trees, prepared and split as a run prepares and splits them."""

from __future__ import annotations

import json
import logging
import shutil
import tarfile

import cv2
import numpy as np
import pytest
from helpers import (
    make_image,
    read_csv,
    run_module,
    tiny_datamodule,
    tiny_overrides,
    write_class_folders,
    write_split_tree,
    zip_tree,
)

from catdog.data import prepare_dataset
from catdog.data.filenames import IMAGE_EXTENSIONS
from catdog.data.settings import DataSettings
from catdog.data.sources import find_images
from catdog.errors import CatdogError


def prepare(source, cache, **kw):
    settings = dict(source=str(source), resolution=16, cache_dir=str(cache), progress=False, num_workers=1)
    return prepare_dataset(DataSettings.from_config({**settings, **kw}))


def split_of_paths(dm) -> dict[str, set[str]]:
    """The paths of each split of a set-up DataModule."""
    paths = dm.arrays.photos["path"]
    return {name: {paths[i] for i in dm.splits[name]} for name in ("train", "val", "test")}


def archived(tree, tmp_path, kind):
    """The tree itself, or a zip or tar of it (its members below the tree's own folder name)."""
    if kind == "dir":
        return tree
    if kind == "zip":
        return zip_tree(tree, tmp_path / "tree.zip")
    with tarfile.open(tmp_path / "tree.tar.gz", "w:gz") as tf:
        tf.add(tree, arcname=tree.name)
    return tmp_path / "tree.tar.gz"


@pytest.mark.parametrize("kind", ["dir", "zip", "tar"])
def test_split_folders_of_three_classes_keep_their_splits_in_a_folder_zip_or_tar(tmp_path, kind):
    """Any case and any val spelling; the classes are the class folders, and every photo stays in its folder's
    split, in splits.csv too."""
    tree = write_split_tree(tmp_path / "export", {"train": 6, "Valid": 3, "TEST": 2}, ("bird", "cat", "dog"))
    source = archived(tree, tmp_path, kind)
    dm = tiny_datamodule(source, tmp_path / "cache", val_fraction=0.1)
    assert dm.classes == ["bird", "cat", "dog"] and dm.arrays.report["per_class"] == {
        "bird": 11,
        "cat": 11,
        "dog": 11,
    }
    prefix = "" if kind == "dir" else "export/"
    expected = {"train": f"{prefix}train/", "val": f"{prefix}Valid/", "test": f"{prefix}TEST/"}
    for split, paths in split_of_paths(dm).items():
        assert len(paths) == {"train": 18, "val": 9, "test": 6}[split]
        assert all(p.startswith(expected[split]) for p in paths), split
    assert np.bincount(dm.arrays.labels[dm.splits["val"]]).tolist() == [3, 3, 3]
    rows = read_csv(dm.split_file)
    assert {r["split"] for r in rows if r["path"].startswith(expected["test"])} == {"test"}
    assert dm.split_file.parent.name.startswith("seed0-val0.1-test0.0-given")


def test_prepare_reads_a_split_tree_as_its_class_folders(tmp_path):
    """The command a user runs first: report.json names the class folders, not train and val."""
    tree = write_split_tree(tmp_path / "tree", {"train": 4, "val": 2})
    proc = run_module("catdog.prepare", f"data.source={tree}", f"data.cache_dir={tmp_path / 'C'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "splits as the source gives them: train/ train, val/ val" in proc.stdout
    (report,) = (tmp_path / "C").glob("*/report.json")
    data = json.loads(report.read_text())
    assert data["classes"] == ["cat", "dog"] and data["split_folders"] == {"train": "train", "val": "val"}


def test_train_and_test_only_draws_val_from_train_and_says_so(tmp_path, caplog):
    tree = write_split_tree(tmp_path / "tree", {"train": 12, "test": 3})
    caplog.set_level(logging.INFO)
    dm = tiny_datamodule(tree, tmp_path / "cache", val_fraction=0.25)
    splits = split_of_paths(dm)
    assert all(p.startswith("test/") for p in splits["test"]) and len(splits["test"]) == 6
    assert all(p.startswith("train/") for p in splits["train"] | splits["val"])
    assert 0 < len(splits["val"]) < 24 and len(splits["train"]) + len(splits["val"]) == 24
    assert (
        "no val split given: val is drawn from train by the hashed rule (data.val_fraction=0.25)"
        in caplog.text
    )
    # the hashed rule: the same val as the train photos alone, split by data.val_fraction
    alone = tiny_datamodule(tree / "train", tmp_path / "cache_train", val_fraction=0.25)
    assert {"train/" + p for p in split_of_paths(alone)["val"]} == splits["val"]


def test_a_class_missing_from_a_split_is_a_warning_naming_both(tmp_path, caplog):
    tree = write_split_tree(tmp_path / "tree", {"train": 4, "val": 2}, ("cat", "dog", "fox"))
    shutil.rmtree(tree / "val" / "fox")
    with caplog.at_level(logging.WARNING):
        found = find_images(tree, "dir")
    assert found.classes == ["cat", "dog", "fox"]
    assert "class fox has no photo in the val split (val/)" in caplog.text
    assert "class cat" not in caplog.text


def test_copies_across_given_splits_stay_put_with_one_warning_and_their_list(tmp_path, caplog):
    tree = write_split_tree(tmp_path / "tree", {"train": 6, "val": 3})
    shutil.copy(tree / "train" / "cat" / "0.jpg", tree / "val" / "cat" / "copy_of_0.jpg")
    shutil.copy(tree / "train" / "dog" / "1.jpg", tree / "val" / "dog" / "copy_of_1.jpg")
    caplog.set_level(logging.INFO)
    dm = tiny_datamodule(tree, tmp_path / "cache", val_fraction=0.1)
    splits = split_of_paths(dm)
    assert {"train/cat/0.jpg", "train/dog/1.jpg"} <= splits["train"]
    assert {"val/cat/copy_of_0.jpg", "val/dog/copy_of_1.jpg"} <= splits["val"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(
        "2 duplicate groups cross the splits data.source gives"
    )
    rows = read_csv(dm.arrays.directory / "duplicates_across_splits.csv")
    assert [(r["group"], r["path"], r["split"]) for r in rows] == [
        ("1", "train/cat/0.jpg", "train"),
        ("1", "val/cat/copy_of_0.jpg", "val"),
        ("2", "train/dog/1.jpg", "train"),
        ("2", "val/dog/copy_of_1.jpg", "val"),
    ]


def test_a_copy_filed_under_another_class_in_another_split_is_a_label_conflict_as_ever(tmp_path):
    tree = write_split_tree(tmp_path / "tree", {"train": 4, "test": 2})
    shutil.copy(tree / "train" / "cat" / "0.jpg", tree / "test" / "dog" / "cat_again.jpg")
    dm = tiny_datamodule(tree, tmp_path / "cache", val_fraction=0.25)
    excluded = {dm.arrays.photos["path"][i] for i in dm.splits["excluded"]}
    assert excluded == {"train/cat/0.jpg", "test/dog/cat_again.jpg"}
    kept = tiny_datamodule(tree, tmp_path / "cache", val_fraction=0.25, label_conflicts="keep")
    assert "test/dog/cat_again.jpg" in split_of_paths(kept)["test"]


@pytest.mark.parametrize(
    "splits, settings, message",
    [
        (
            {"train": 3, "val": 2},
            {"val_fraction": 0.3},
            r"^data.val_fraction=0.3: data.source=\S+ gives its own",
        ),
        ({"train": 3, "val": 2}, {"test_fraction": 0.2}, r"^data.test_fraction=0.2: .*splits \(train, val\)"),
        (
            {"train": 3, "test": 2},
            {"folds": 3},
            r"^data.folds=3: .*splits \(train, test\)\. Add data.folds=null \(a preset",
        ),
        (
            {"train": 3, "val": 2, "test": 2},
            {"val_fraction": 0.2, "folds": 2},
            r"^data.folds=2, data.val_fraction=0.2: .*Add data.folds=null data.val_fraction=0.1 .*data.given_splits=false",
        ),
    ],
)
def test_split_settings_against_given_splits_are_one_error_before_decoding(
    tmp_path, splits, settings, message
):
    tree = write_split_tree(tmp_path / "tree", splits)
    with pytest.raises(CatdogError, match=message):
        prepare(tree, tmp_path / "cache", **settings)
    assert not (tmp_path / "cache").exists()  # nothing decoded


def test_split_folders_true_false_and_given_splits_false(tmp_path):
    tree = write_split_tree(tmp_path / "tree", {"train": 4, "val": 2})
    assert prepare(tree, tmp_path / "c", split_folders=False).classes == ["train", "val"]
    assert prepare(tree, tmp_path / "c", split_folders=True).classes == ["cat", "dog"]
    with pytest.raises(
        CatdogError, match="data.split_folders=true reads class folders .* data.layout=kaggle"
    ):
        prepare(tree, tmp_path / "c", split_folders=True, layout="kaggle")
    plain = write_class_folders(tmp_path / "plain", per_class=3)
    with pytest.raises(
        CatdogError, match=r"data.split_folders=true: the top level of .* holds Cat/, Dog/, not only"
    ):
        prepare(plain, tmp_path / "c", split_folders=True)
    # given_splits=false: the class folders, split by the hashed rule (what the audit's folds need)
    pooled = tiny_datamodule(tree, tmp_path / "c", given_splits=False, folds=3, fold=1)
    assert pooled.classes == ["cat", "dog"]
    assert any(p.startswith("val/") for p in split_of_paths(pooled)["train"])


def test_data_exclude_leaves_out_only_what_it_names_from_given_splits(tmp_path):
    tree = write_split_tree(tmp_path / "tree", {"train": 6, "val": 3})
    listed = tmp_path / "exclude.txt"
    listed.write_text("val/cat/0.jpg\ntrain/dog/2.jpg\n")
    dm = tiny_datamodule(tree, tmp_path / "cache", val_fraction=0.1, exclude=str(listed))
    splits = split_of_paths(dm)
    excluded = {dm.arrays.photos["path"][i] for i in dm.splits["excluded"]}
    assert excluded == {"val/cat/0.jpg", "train/dog/2.jpg"}
    assert all(p.startswith("val/") for p in splits["val"]) and len(splits["val"]) == 5
    assert all(p.startswith("train/") for p in splits["train"]) and len(splits["train"]) == 11


def write_labels_csv(tmp_path, text: str):
    photos = write_class_folders(tmp_path / "photos", per_class=4)
    (tmp_path / "photos" / "labels.csv").write_text(text.replace("ABS", str(photos)))
    return tmp_path / "photos" / "labels.csv"


def test_a_labels_csv_gives_classes_splits_relative_and_absolute_paths(tmp_path):
    rows = [f"Cat/{i}.jpg,kitten,{'train' if i < 3 else 'val'}" for i in range(4)]
    rows += [f"ABS/Dog/{i}.jpg,puppy,{'Train' if i < 3 else 'VAL'}" for i in range(4)]
    csv = write_labels_csv(
        tmp_path, "path,label,split\n" + "\n".join(rows) + "\nCat/gone.jpg,kitten,train\n\n"
    )
    dm = tiny_datamodule(csv, tmp_path / "cache", val_fraction=0.1)
    assert dm.classes == ["kitten", "puppy"] and dm.arrays.report["per_class"] == {"kitten": 4, "puppy": 4}
    (skipped,) = dm.arrays.report["skipped"]
    assert skipped["path"] == "Cat/gone.jpg" and skipped["reason"].startswith("unreadable (FileNotFoundError")
    splits = split_of_paths(dm)
    assert splits["val"] == {"Cat/3.jpg", f"{tmp_path}/photos/Dog/3.jpg"}
    # a changed label is another cache
    again = write_labels_csv(tmp_path / "b", "path,label\nCat/0.jpg,a\nCat/1.jpg,b\n")
    assert prepare(again, tmp_path / "cache").classes == ["a", "b"]
    again.write_text("path,label\nCat/0.jpg,a\nCat/1.jpg,c\n")
    assert prepare(again, tmp_path / "cache").classes == ["a", "c"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("path,labl\nCat/0.jpg,cat\n", r"labels.csv, row 1: no label column \(the header is path,labl\)"),
        ("path,label\nCat/0.jpg,cat\nCat/1.jpg,\n", r"labels.csv, row 3: empty label for Cat/1.jpg"),
        (
            "path,label,split\nCat/0.jpg,cat,train\nDog/0.jpg,dog,dev\n",
            r"labels.csv, row 3: unknown split 'dev'",
        ),
        (
            "path,label,split\nCat/0.jpg,cat,train\n\nDog/0.jpg,dog\n",
            r"labels.csv, row 4: 2 values where the",
        ),
    ],
    ids=["missing-column", "empty-label", "unknown-split", "short-row"],
)
def test_a_bad_labels_csv_is_one_error_naming_the_row(tmp_path, text, message):
    with pytest.raises(CatdogError, match=message):
        prepare(write_labels_csv(tmp_path, text), tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_class_folder_of_heic_files_is_named_with_the_fix(tmp_path):
    root = write_class_folders(tmp_path / "pets", per_class=3)
    for f in (root / "Cat").iterdir():
        f.rename(f.with_suffix(".HEIC"))
    with pytest.raises(
        CatdogError, match=r"Cat/ has no usable images \(3 .HEIC files: not supported; convert them"
    ):
        prepare(root, tmp_path / "cache")
    shutil.copy(root / "Dog" / "0.jpg", root / "Cat" / "converted.jpg")
    arrays = prepare(root, tmp_path / "cache")
    assert arrays.report["per_class"] == {"Cat": 1, "Dog": 3}
    assert {s["reason"] for s in arrays.report["skipped"]} == {
        "unsupported image format (.HEIC: convert it to JPEG)"
    }


def test_every_listed_extension_is_read_by_training(tmp_path):
    """.jfif and .jpe (Windows' names for JPEG) and the other formats OpenCV decodes are photos, not skipped."""
    root = write_class_folders(tmp_path / "pets", per_class=2)
    image = make_image(0, seed=1, size=(64, 64))
    written = []
    for ext in IMAGE_EXTENSIONS:
        coded = {".jfif": ".jpg", ".jpe": ".jpg", ".pbm": ".pgm"}.get(ext, ext)
        try:
            ok, buf = cv2.imencode(coded, image[:, :, 0] if coded == ".pgm" else image)
        except cv2.error:
            ok = False
        if ok:  # OpenCV reads more formats than it writes (GIF, JPEG 2000 at this size)
            (root / "Cat" / f"x{ext}").write_bytes(buf.tobytes())
            written.append(f"Cat/x{ext}")
    assert {".jfif", ".jpe", ".png", ".webp", ".tif", ".bmp"} <= {w[5:] for w in written}
    arrays = prepare(root, tmp_path / "cache")
    assert arrays.report["skipped"] == [] and set(written) <= set(arrays.photos["path"])


def test_the_skip_report_follows_files_that_are_passed_over(tmp_path):
    root = write_class_folders(tmp_path / "pets", per_class=3)
    first = prepare(root, tmp_path / "cache")
    assert first.report["skipped"] == []
    (root / "notes.txt").write_text("hello")
    shutil.copy(root / "Cat" / "0.jpg", root / "stray.jpg")
    added = prepare(root, tmp_path / "cache")
    assert sorted((s["path"], s["reason"]) for s in added.report["skipped"]) == [
        ("notes.txt", "not an image file (by extension)"),
        ("stray.jpg", "not inside a class folder"),
    ]
    (root / "notes.txt").unlink()
    (root / "stray.jpg").unlink()
    assert prepare(root, tmp_path / "cache").directory == first.directory


@pytest.mark.slow
def test_train_validates_on_val_and_tests_on_test_and_evaluate_scores_test(tmp_path):
    """train.py on a split tree: val/acc rests on val/, test=true on test/ (no data.test_fraction), splits.csv
    lists the folders' splits, and evaluate split=test scores test/ again."""
    from helpers import train_in_process
    from test_evaluate import evaluate_in_process

    tree = write_split_tree(tmp_path / "tree", {"train": 8, "val": 3, "test": 2}, ("cat", "dog", "fox"))
    overrides = [o for o in tiny_overrides(tree, tmp_path) if not o.startswith("data.val_fraction")]
    metrics = train_in_process(*overrides, "test=true")
    assert (metrics["val/n_images"], metrics["test/n_images"]) == (9, 6)
    rows = read_csv(tmp_path / "run" / "splits.csv")
    assert {(r["path"].split("/")[0], r["split"]) for r in rows} == {
        ("train", "train"),
        ("val", "val"),
        ("test", "test"),
    }
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    scored = evaluate_in_process(ckpt, None, tmp_path / "eval", "split=test")
    assert (scored["split"], scored["n_images"], scored["classes"]) == ("test", 6, ["cat", "dog", "fox"])
    other = write_split_tree(tmp_path / "other", {"train": 1, "val": 2, "test": 1}, ("cat", "dog", "fox"))
    given = evaluate_in_process(ckpt, other, tmp_path / "eval_other", "split=val")
    assert (given["split"], given["n_images"]) == ("val", 6) and "val/acc" in given
    with pytest.raises(CatdogError, match="data.val_fraction=0.25: data.source=.* gives its own splits"):
        train_in_process(*tiny_overrides(tree, tmp_path / "again"))
    # a zip is listed only by training: its missing test split is named there, before fitting
    no_test = zip_tree(
        write_split_tree(tmp_path / "no_test", {"train": 4, "val": 2}), tmp_path / "no_test.zip"
    )
    with pytest.raises(
        CatdogError, match="test=true: data.test_fraction=0 and data.source gives no test split"
    ):
        train_in_process(
            *[o for o in tiny_overrides(no_test, tmp_path / "nt") if "val_fraction" not in o], "test=true"
        )


@pytest.mark.slow
def test_the_audit_scores_every_photo_of_a_split_tree_by_its_class_folder(tmp_path):
    from helpers import run_in_process
    from test_audit import audit_overrides

    from catdog.audit.__main__ import audit

    tree = write_split_tree(tmp_path / "tree", {"train": 6, "val": 2, "test": 2})
    rows = run_in_process(audit, "audit", *audit_overrides(tree, tmp_path), "trainer.max_epochs=1")
    assert len(rows) == 20 and {r["label"] for r in rows} == {"cat", "dog"}
    assert {r["path"].split("/")[0] for r in rows} == {"train", "val", "test"}
