"""Each data setting in one shape (catdog/data/settings.py), the model's rules in one spec checked before any photo is
decoded, and the rule helpers without torch."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields, replace

import pytest
import torch
from helpers import ROOT, run_train, tiny_overrides, train_checkpoint, write_class_folders
from omegaconf import OmegaConf

from catdog.data.dataset import prepare_dataset
from catdog.data.settings import DATA_KEYS, DataSettings, DecodeSettings, SplitSettings
from catdog.errors import CatdogError
from catdog.held_out import TRAINING_DATA
from catdog.models.convnet_settings import ConvNetSettings
from catdog.models.settings import ModelSettings


def test_the_data_config_holds_the_settings_fields_and_nothing_else():
    # a new data option is a field of a settings object plus its default in the config: nothing else to touch
    config = OmegaConf.load(ROOT / "configs" / "data" / "catdog.yaml")
    assert set(config) == set(DATA_KEYS)
    assert len(DATA_KEYS) == len(set(DATA_KEYS))  # no key in two settings objects


def test_config_to_settings_to_checkpoint_to_settings(tmp_path):
    source = write_class_folders(tmp_path / "photos", per_class=4)
    data = {"test_fraction": 0.25, "seed": 3, "label_conflicts": "keep", "fast_decode": True}
    ckpt = train_checkpoint(source, tmp_path, data=data)
    record = torch.load(ckpt, weights_only=True)[TRAINING_DATA]
    config = {
        "source": str(source),
        "resolution": 16,
        "channels": 3,
        "val_fraction": 0.25,
        "batch_size": 8,
        "num_workers": 1,
        **data,
    }
    settings = DataSettings.from_config(config)
    assert DecodeSettings.from_config(record) == settings.decode
    assert SplitSettings.from_config(record) == settings.split
    assert record["source"] == str(source.resolve())
    assert {k: v for k, v in record.items() if not k.endswith("_ids")} == settings.record()
    assert (
        settings.decode.fast_decode and settings.split.label_conflicts == "keep"
    )  # the config's, not defaults


def test_a_previous_checkpoints_record_reads_with_defaults_for_what_it_lacks():
    # catdog 0.2 recorded these keys of its training data (no resolution, channels, fast_decode or balance)
    old = {
        "source": "/photos",
        "layout": "kaggle",
        "skip_truncated": False,
        "max_pixels": 5000,
        "seed": 7,
        "val_fraction": 0.2,
        "test_fraction": 0.1,
        "folds": None,
        "fold": 0,
        "label_conflicts": "drop",
        "exclude": "/gone/audit.csv",  # read as recorded: the photos' hashes, not the file, are what counts
    }
    assert DecodeSettings.from_config(old) == DecodeSettings(
        layout="kaggle", skip_truncated=False, max_pixels=5000
    )
    assert SplitSettings.from_config(old) == SplitSettings(
        seed=7, val_fraction=0.2, test_fraction=0.1, exclude="/gone/audit.csv"
    )


def test_the_cache_key_follows_the_decode_settings_alone(tmp_path):
    source = write_class_folders(tmp_path / "photos", per_class=3)
    config = {
        "source": str(source),
        "resolution": 16,
        "cache_dir": str(tmp_path / "cache"),
        "progress": False,
    }
    settings = DataSettings.from_config(config)
    first = prepare_dataset(settings).directory
    # equal settings, built anew, and other split or loader settings: the same cache, loaded
    same = DataSettings.from_config({**config, "seed": 5, "val_fraction": 0.3, "batch_size": 4, "folds": 2})
    assert prepare_dataset(same).directory == first
    changed = {
        "resolution": 8,
        "channels": 3,
        "skip_truncated": False,
        "max_pixels": 10**6,
        "fast_decode": True,
        "resize": "pad",
    }
    assert set(changed) == {f.name for f in fields(DecodeSettings)} - {"layout", "split_folders"}
    directories = {first}
    for key, value in changed.items():
        directory = prepare_dataset(
            replace(settings, decode=replace(settings.decode, **{key: value}))
        ).directory
        assert directory not in directories, key
        directories.add(directory)
    # the layout and split folders are hashed as found: auto that finds class folders is data.layout=folders,
    # and data.split_folders=false
    folders = replace(settings, decode=replace(settings.decode, layout="folders", split_folders=False))
    assert prepare_dataset(folders).directory == first


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"resolutoin": 64},
            "data.resolutoin is not a setting of data (did you mean data.resolution?). Options: ",
        ),
        ({"channels": 2}, "data.channels=2 is invalid: expected 1 (grayscale) or 3 (colour)"),
        ({"max_pixels": 0}, "data.max_pixels=0 is invalid"),
        ({"exclude": "/no/such/audit.csv"}, "data.exclude=/no/such/audit.csv: no such file"),
    ],
)
def test_a_wrong_data_key_or_value_is_named(tmp_path, config, message):
    with pytest.raises(CatdogError) as caught:
        DataSettings.from_config({"source": str(tmp_path), **config})
    assert str(caught.value).startswith(message)


def test_resolution_and_channels_follow_one_rule_in_both_specs():
    for value in (2, 4, 0, True):
        with pytest.raises(
            CatdogError, match=rf"data\.channels={value!r} is invalid: expected 1 \(grayscale\)"
        ):
            DecodeSettings(channels=value)
        with pytest.raises(
            CatdogError, match=rf"data\.channels={value!r} is invalid: expected 1 \(grayscale\)"
        ):
            ConvNetSettings(value, 32)
    for value in (0, -3, 2.5):
        message = rf"data\.resolution={value!r} is invalid: expected a positive integer"
        with pytest.raises(CatdogError, match=message):
            DecodeSettings(resolution=value)
        with pytest.raises(CatdogError, match=message):
            ConvNetSettings(3, value)


@pytest.mark.parametrize(
    "model, message",
    [
        ({"loss": "l1"}, "model.loss='l1' is invalid: expected cross_entropy or mse"),
        ({"label_smoothing": 1.0}, "model.label_smoothing=1.0 is invalid"),
        ({"augment": {"hflip": "maybe"}}, "model.augment.hflip='maybe' is invalid"),
        (
            {"augment": {"translate": 40}},
            "model.augment.translate=40: shifts must be 0 <= translate < data.resolution",
        ),
        (
            {"progressive_resize": {"start": 20, "until_epoch": 2}},
            "model.progressive_resize needs model.head=gap",
        ),
        ({"whiten": True, "channels": [5, 8]}, "model.whiten=true: model.channels[0]=5 must be even"),
    ],
)
def test_the_model_spec_names_a_wrong_rule(model, message):
    config = {
        "in_channels": 3,
        "resolution": 32,
        "channels": [4, 8],
        "kernel": 3,
        "optimizer": {"lr": 1},
        **model,
    }
    with pytest.raises(CatdogError) as caught:
        ModelSettings.from_config(config)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    "override, key",
    [("model.augment={hflip:maybe}", "model.augment.hflip"), ("model.loss=l1", "model.loss")],
)
def test_a_wrong_model_rule_stops_train_py_before_any_photo_is_decoded(tmp_path, override, key):
    source = write_class_folders(tmp_path / "photos", per_class=40)
    proc = run_train(*tiny_overrides(source, tmp_path), override, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {key}=")
    assert not (tmp_path / "cache").exists()  # nothing decoded: no cache, not even a temporary one


def test_the_rule_helpers_and_specs_import_without_torch_or_lightning():
    # catdog.run.checks too: the config check of `catdog.prepare`, which starts without torch
    modules = ["catdog.rules", "catdog.data.settings", "catdog.models.settings", "catdog.run.checks"]
    code = (
        f"import sys, {', '.join(modules)}\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning', 'pytorch_lightning'))\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
