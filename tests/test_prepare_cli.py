"""`python -m catdog.prepare`: prepares the cache without training and prints the report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import ROOT, run_module
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf

from catdog import prepare
from catdog.errors import CatdogError
from catdog.prepare import CONFIG_DIR


def test_prepare_builds_the_cache_and_prints_the_report(image_folder, tmp_path):
    (image_folder / "Cat" / "666.jpg").write_bytes(b"")
    (image_folder / "Dog" / "cat_copy.jpg").write_bytes((image_folder / "Cat" / "3.jpg").read_bytes())
    cache = tmp_path / "cache"
    args = [
        f"data.source={image_folder}",
        f"data.cache_dir={cache}",
        "data.resolution=16",
        "data.progress=false",
    ]
    proc = run_module("catdog.prepare", *args)
    assert proc.returncode == 0, proc.stderr
    (directory,) = cache.iterdir()
    report = json.loads((directory / "report.json").read_text())
    assert report["per_class"] == {"Cat": 20, "Dog": 21} and report["resolution"] == 16
    out = proc.stdout
    assert "41 images (Cat: 20, Dog: 21) at 16x16x1; skipped 1" in out
    assert "duplicates: 1 groups of identical files (2 photos)" in out
    assert "label conflicts: 1 groups (2 photos; excluded unless data.label_conflicts=keep)" in out
    assert "skipped 1: empty file" in out and "Cat/666.jpg" in out
    assert "original width: min 40, mean 40.0, max 40 pixels" in out
    assert f"cache: {directory}" in out
    # `~` in a value is the home dir, as in train.py: the same photos, loaded from the cache, same report
    again = run_module(
        "catdog.prepare", f"data.source=~/{image_folder.name}", *args[1:], home=image_folder.parent
    )
    assert again.returncode == 0 and again.stdout == out, again.stderr


def test_prepare_help_and_errors(tmp_path):
    help_text = run_module("catdog.prepare", "--help")
    assert help_text.returncode == 0 and "python -m catdog.prepare" in help_text.stdout
    assert "data.source" in help_text.stdout
    missing = run_module(
        "catdog.prepare", f"data.source={tmp_path}/nowhere", f"data.cache_dir={tmp_path}/cache"
    )
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].startswith("error: data.source=")
    assert "Traceback" not in missing.stderr and not (tmp_path / "cache").exists()
    typo = run_module("catdog.prepare", "data.resolutoin=32")
    assert typo.returncode == 1 and "data.resolutoin" in typo.stderr and "Traceback" not in typo.stderr


def hydra_compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["data.resolution=64", "data.channels=3"],
        ["data.source='/a b'", "data.cache_dir=${paths.root_dir}/c", "data.num_workers=null"],
    ],
)
def test_data_only_overrides_give_what_hydra_composes(overrides):
    parsed = OverridesParser.create().parse_overrides(overrides)
    assert prepare.sets_data_keys_only(parsed)
    fast, full = prepare.compose_data_only(parsed), hydra_compose(overrides)
    assert set(fast) < set(full) and {"data", "paths", "seed"} <= set(fast)
    assert OmegaConf.to_container(fast) == {
        k: v for k, v in OmegaConf.to_container(full).items() if k in fast
    }
    assert OmegaConf.to_container(fast.data, resolve=True) == OmegaConf.to_container(full.data, resolve=True)


def test_other_overrides_compose_the_whole_tree_and_errors_read_as_hydra_s():
    other = [
        "experiment=fast",
        "+data.extra=1",
        "data.resolution=32,64",
        "trainer.max_epochs=2",
        "data=catdog",
    ]
    for override in other:
        assert not prepare.sets_data_keys_only(OverridesParser.create().parse_overrides([override]))
    assert prepare.compose(["experiment=fast"]).data.resolution == 64
    with pytest.raises(HydraException) as hydra_error:
        hydra_compose(["data.resolutoin=32"])
    with pytest.raises(CatdogError) as ours:
        prepare.compose(["data.resolutoin=32"])
    assert str(ours.value) == f"{hydra_error.value} (see `python -m catdog.prepare --help`)"


def test_preparing_imports_neither_torch_nor_lightning(image_folder, tmp_path):
    code = (
        "import sys\n"
        "from catdog.prepare import main\n"
        f"main(['data.source={image_folder}', 'data.cache_dir={tmp_path / 'cache'}', 'data.progress=false'])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'lightning', 'pytorch_lightning', "
        "'torchmetrics'}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]" and "cache: " in proc.stdout
