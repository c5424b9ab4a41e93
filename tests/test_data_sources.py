"""Where images come from: class folders at any depth, Kaggle's flat names, zip and tar archives read in place."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import make_image, write_class_folders, write_kaggle, zip_tree

from catdog.data import prepare_dataset
from catdog.data.dataset import summarize
from catdog.data.settings import DataSettings
from catdog.data.sources import SourceReader, find_images, resolve_root
from catdog.errors import CatdogError


def prepare(source, cache, **kw):
    return prepare_dataset(
        DataSettings.from_config(
            dict(source=str(source), resolution=16, cache_dir=str(cache), progress=False, **kw)
        )
    )


def test_class_folders_with_any_names_at_any_depth(tmp_path):
    root = tmp_path / "photos"
    write_class_folders(root / "a" / "b", per_class=3, classes=("Kitty", "Puppy"))
    nested = root / "a" / "b" / "Puppy" / "more"
    nested.mkdir()
    cv2.imwrite(str(nested / "x.png"), make_image(1, seed=99))
    found = find_images(root, "dir")
    assert found.layout == "folders"
    assert found.classes == ["Kitty", "Puppy"]
    assert sorted(zip(found.paths, found.labels, strict=True))[-1] == ("a/b/Puppy/more/x.png", 1)
    assert np.bincount(found.labels).tolist() == [3, 4]


def test_kaggle_flat_layout_is_detected_and_labels_come_from_names(tmp_path):
    folder = write_kaggle(tmp_path / "train")
    found = find_images(folder, "dir")
    assert (found.layout, found.classes) == ("kaggle", ["cat", "dog"])
    assert all(p.startswith(found.classes[y]) for p, y in zip(found.paths, found.labels, strict=True))
    with pytest.raises(CatdogError, match="data.layout=kaggle"):
        find_images(folder, "dir", layout="folders")
    with pytest.raises(CatdogError, match="data.layout='sideways' is invalid"):
        find_images(folder, "dir", layout="sideways")


def by_photo(arrays):
    """The arrays in the order of the photos' paths below PetImages/ (archives list members in any order)."""
    order = np.argsort([p.removeprefix("PetImages/") for p in arrays.photos["path"]])
    return arrays.images[order], arrays.labels[order], [arrays.photos["sha256"][i] for i in order]


def test_folder_zip_and_tar_give_the_same_arrays(tmp_path):
    folder = write_class_folders(tmp_path / "PetImages", per_class=12)
    archives = [zip_tree(folder, tmp_path / "pets.zip")]
    for name, mode in (("pets.tar", "w"), ("pets.tar.gz", "w:gz")):
        with tarfile.open(tmp_path / name, mode) as tf:
            tf.add(folder, arcname="PetImages")
        archives.append(tmp_path / name)
    reference = prepare(folder, tmp_path / "cache", num_workers=1)
    for archive in archives:
        # two forked workers: each must open its own archive handle
        arrays = prepare(archive, tmp_path / "cache", num_workers=2)
        assert arrays.directory != reference.directory
        assert arrays.classes == reference.classes
        for got, expected in zip(by_photo(arrays), by_photo(reference), strict=True):
            np.testing.assert_array_equal(got, expected)


def test_archives_made_from_inside_the_folder_read_like_the_folder(tmp_path):
    """`tar cf x.tar -C photos .` and shutil.make_archive(root_dir=...) name every member `./Cat/...`."""
    folder = write_class_folders(tmp_path / "photos", per_class=4)
    subprocess.run(["tar", "cf", str(tmp_path / "dot.tar"), "-C", str(folder), "."], check=True)
    gztar = shutil.make_archive(str(tmp_path / "made"), "gztar", root_dir=folder)
    with zipfile.ZipFile(tmp_path / "dot.zip", "w") as zf:
        for p in sorted(folder.rglob("*.jpg")):
            zf.write(p, "./" + p.relative_to(folder).as_posix())
    with tarfile.open(tmp_path / "dot.tar") as tf:
        assert all(m.name.startswith("./") or m.name == "." for m in tf.getmembers())  # what users' tars hold
    reference = prepare(folder, tmp_path / "cache")
    for archive in (tmp_path / "dot.tar", gztar, tmp_path / "dot.zip"):
        found = find_images(Path(archive), "tar" if "tar" in str(archive) else "zip")
        assert found.classes == ["Cat", "Dog"]
        assert sorted(found.paths) == sorted(reference.photos["path"])
        arrays = prepare(archive, tmp_path / "cache")
        assert arrays.report["per_class"] == {"Cat": 4, "Dog": 4} and arrays.report["skipped"] == []


def test_archive_members_outside_the_archive_are_never_read_nor_classes(tmp_path):
    folder = write_class_folders(tmp_path / "photos", per_class=3)
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(folder, arcname="photos")
        data = (folder / "Cat" / "0.jpg").read_bytes()
        for name in ("../Bird/1.jpg", "/abs/Fish/1.jpg", "photos/../../Cow/1.jpg"):
            member = tarfile.TarInfo(name)  # addfile keeps the name as given (add strips a leading /)
            member.size = len(data)
            tf.addfile(member, io.BytesIO(data))
    found = find_images(archive, "tar")
    assert found.classes == ["Cat", "Dog"] and len(found.paths) == 6
    outside = sorted(i["path"] for i in found.ignored if i["reason"].startswith("outside the archive"))
    assert outside == ["../Bird/1.jpg", "../Cow/1.jpg", "/abs/Fish/1.jpg"]
    reader = SourceReader(archive, "tar")
    with pytest.raises(OSError, match="not a regular file inside the archive"):
        reader.read("../Bird/1.jpg")
    assert reader.read("photos/Cat/0.jpg") == (folder / "Cat" / "0.jpg").read_bytes()
    reader.close()


def test_a_folder_holding_one_archive_uses_it(tmp_path):
    folder = write_kaggle(tmp_path / "src" / "train")
    holder = tmp_path / "download"
    holder.mkdir()
    zip_tree(folder, holder / "train.zip")
    assert resolve_root(holder) == (holder / "train.zip", "zip")
    arrays = prepare(holder, tmp_path / "cache")
    assert arrays.report["layout"] == "kaggle"
    assert arrays.report["per_class"] == {"cat": 6, "dog": 6}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: root / "nowhere", "no such file or directory"),
        (lambda root: (root / "empty").mkdir() or root / "empty", "no images found"),
        (lambda root: write_class_folders(root / "one", 3, classes=("Cat",)) / "..", "no class sub-folders"),
        (lambda root: write_class_folders(root / "one", 3, classes=("Cat",)), "no class sub-folders"),
        (lambda root: (root / "notes.txt").write_text("hi") and root / "notes.txt", "not a .zip or .tar"),
    ],
    ids=["missing", "empty", "single-class-parent", "single-class", "plain-file"],
)
def test_unusable_sources_give_one_message_and_write_nothing(tmp_path, make, message):
    source = make(tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(CatdogError, match=message) as info:
        prepare(source, cache)
    assert "data.source" in str(info.value)
    assert not cache.exists()


def test_single_kaggle_prefix_is_rejected(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"cat.{i}.jpg"), make_image(0, i))
    with pytest.raises(CatdogError, match="only 1 class"):
        prepare(folder, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_non_utf8_file_names_are_read_and_reported_printably(tmp_path):
    root = write_class_folders(tmp_path / "pets", per_class=3)
    odd = os.fsencode(root / "Cat") + b"/caf\xe9.jpg"
    ok, buf = cv2.imencode(".jpg", make_image(0, seed=7))
    with open(odd, "wb") as f:
        f.write(buf.tobytes())
    with open(os.fsencode(root / "Dog") + b"/bad\xff.jpg", "wb") as f:
        f.write(b"")
    arrays = prepare(root, tmp_path / "cache")
    assert arrays.report["per_class"] == {"Cat": 4, "Dog": 3}
    assert arrays.report["skipped"] == [{"path": "Dog/bad\ufffd.jpg", "reason": "empty file"}]


def test_a_file_name_with_a_carriage_return_survives_the_cache(tmp_path):
    """photos.csv ends its lines in \n alone: a \r in a name (macOS's `Icon\r`) must not split its row."""
    root = write_class_folders(tmp_path / "pets", per_class=3)
    ok, jpg = cv2.imencode(".jpg", make_image(0, seed=7))
    (root / "Cat" / "odd\rname.jpg").write_bytes(jpg.tobytes())
    arrays = prepare(root, tmp_path / "cache")
    assert "Cat/odd\rname.jpg" in arrays.photos["path"] and len(arrays.photos["path"]) == 7
    text = (arrays.directory / "photos.csv").read_bytes()
    assert b"\r\n" not in text and text.count(b"\n") == 8


def test_unreadable_files_are_skipped_with_the_reason(tmp_path):
    root = write_class_folders(tmp_path / "pets", per_class=3)
    (root / "Cat" / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")  # unreadable even for root
    arrays = prepare(root, tmp_path / "cache")
    (entry,) = arrays.report["skipped"]
    assert entry["path"] == "Cat/gone.jpg" and entry["reason"].startswith("unreadable (FileNotFoundError")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files whatever their mode"
)
def test_files_without_read_permission_are_skipped(tmp_path):
    root = write_class_folders(tmp_path / "pets", per_class=3)
    locked = root / "Dog" / "0.jpg"
    locked.chmod(0)
    try:
        arrays = prepare(root, tmp_path / "cache")
    finally:
        locked.chmod(0o644)
    assert arrays.report["skipped"][0]["path"] == "Dog/0.jpg"
    assert arrays.report["skipped"][0]["reason"].startswith("unreadable (PermissionError")


def test_the_summary_has_one_line_per_kind_of_reason_with_its_count(tmp_path):
    """Each too large photo and each unreadable file has its own reason text (size, file name): one line each."""
    root = write_class_folders(tmp_path / "pets", per_class=3)
    for i, size in enumerate(((50, 40), (60, 50), (70, 60), (80, 70))):  # 40x32 photos pass max_pixels=1500
        cv2.imwrite(str(root / "Dog" / f"big{i}.jpg"), make_image(1, seed=i, size=size))
    for name in ("gone1.jpg", "gone2.jpg"):
        (root / "Cat" / name).symlink_to(tmp_path / name)
    arrays = prepare(root, tmp_path / "cache", max_pixels=1500)
    assert arrays.report["n_skipped"] == 6 and len({s["reason"] for s in arrays.report["skipped"]}) == 6
    lines = summarize(arrays.report).splitlines()
    counts = [line.strip() for line in lines if line.startswith("  skipped ")]
    assert counts == [
        "skipped 4: too large (e.g. 50x40 pixels > data.max_pixels=1500)",
        f"skipped 2: unreadable (e.g. FileNotFoundError: [Errno 2] No such file or directory: "
        f"'{root / 'Cat' / 'gone1.jpg'}')",
    ]


def test_a_source_where_nothing_decodes_writes_nothing(tmp_path):
    root = tmp_path / "pets"
    for name in ("Cat", "Dog"):
        (root / name).mkdir(parents=True)
        (root / name / "1.jpg").write_bytes(b"")
        (root / name / "2.jpg").write_text("not an image")
    with pytest.raises(
        CatdogError,
        match=r"none of the 4 image files could be decoded \(2 empty file, 2 not a decodable image\)",
    ):
        prepare(root, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_damaged_archive_member_is_skipped_with_the_reason(tmp_path):
    root = write_class_folders(tmp_path / "pets", per_class=3)
    victim = root / "Dog" / "1.jpg"
    payload = victim.read_bytes()
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(
        archive, "w", zipfile.ZIP_STORED
    ) as zf:  # stored: the member's bytes lie as they are
        for p in sorted(root.rglob("*")):
            zf.write(p, p.relative_to(root.parent).as_posix())
    data = bytearray(archive.read_bytes())
    at = data.find(payload) + len(payload) // 2
    data[at] ^= 0xFF  # a flipped bit in the member: its CRC no longer matches
    archive.write_bytes(bytes(data))
    arrays = prepare(archive, tmp_path / "cache")
    (entry,) = arrays.report["skipped"]
    assert entry["path"].endswith("Dog/1.jpg") and "damaged in pets.zip" in entry["reason"]
    assert len(arrays.labels) == 5
