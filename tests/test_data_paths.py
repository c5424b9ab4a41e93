"""Each cached image's source path (photos.csv, what per-image predictions are keyed by), from a folder and a zip
written in shuffled member order."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from helpers import write_class_folders, zip_tree

from catdog.data.dataset import prepare_dataset
from catdog.data.decode import decode_for_cache
from catdog.data.settings import DataSettings, DecodeSettings


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_every_cached_image_is_the_photo_at_its_path(tmp_path, kind):
    folder = write_class_folders(tmp_path / "PetImages", per_class=6)
    (folder / "Cat" / "2b.jpg").write_bytes(b"not an image")  # skipped: the paths after it must not shift
    source = folder if kind == "folder" else zip_tree(folder, tmp_path / "PetImages.zip")
    arrays = prepare_dataset(
        DataSettings.from_config(
            dict(source=str(source), resolution=16, cache_dir=str(tmp_path / "cache"), progress=False)
        )
    )
    paths = arrays.photos["path"]
    assert len(paths) == len(arrays.labels) == 12 and "Cat/2b.jpg" not in " ".join(paths)
    prefix = "" if kind == "folder" else "PetImages/"
    assert sorted(paths)[0] == f"{prefix}Cat/0.jpg"
    for path, image, label in zip(paths, arrays.images, arrays.labels, strict=True):
        if kind == "folder":
            data = (folder / path).read_bytes()
        else:
            with zipfile.ZipFile(source) as zf:
                data = zf.read(path)
        np.testing.assert_array_equal(decode_for_cache(data, DecodeSettings(resolution=16))[0], image)
        assert arrays.classes[label] == path.split("/")[-2]
