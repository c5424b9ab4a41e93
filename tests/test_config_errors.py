"""A mistyped key, group option or `+key=` gets one `error:` line with the closest real name and the options."""

from __future__ import annotations

import pytest
from helpers import ROOT, run_train
from hydra import compose, initialize_config_dir

from catdog.data.settings import DataSettings
from catdog.errors import CatdogError
from catdog.overrides import override_key
from catdog.shell.cli import user_error
from catdog.shell.config_errors import composition_error


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "data.resolutoin=64",
            "data.resolutoin is not a config key (did you mean data.resolution?). Options: ",
        ),
        ("trainer.max_epoch=3", "trainer.max_epoch is not a config key (did you mean trainer.max_epochs?)"),
        ("model.kernl=3", "model.kernl is not a config key (did you mean model.kernel?)"),
        (
            "model/optimizer=adamm",
            "model/optimizer=adamm is not an option of model/optimizer (did you mean adam?). Options: adam, adamw, sgd",
        ),
        ("experiment=fastt", "experiment=fastt is not an option of experiment (did you mean fast?)"),
        (
            "modle/optimizer=adam",
            "modle/optimizer is not a config group or key (did you mean model/optimizer?)",
        ),
        ("seeed=3", "seeed is not a config group or key (did you mean seed?)"),
        (
            "model.augmnt.blur=0.5",
            "model.augmnt is not a config key (did you mean model.augment?). Options: ",
        ),
        (
            "model.augment.blur=0.5",  # null in the default config: no keys to override yet
            "model.augment.blur is not a config key: model.augment is null here. Add the key with "
            "+model.augment.blur=..., or give model.augment whole",
        ),
    ],
)
def test_a_mistyped_key_or_option_names_the_closest_real_one(override, message):
    overrides = ["data.batch_size=8", override]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        with pytest.raises(Exception) as caught:
            compose("train", overrides=overrides)
        text = composition_error(caught.value, "train", overrides)
    assert text is not None and text.startswith(message) and "\n" not in text


def test_following_hydras_plus_advice_gets_the_same_hint_not_a_type_error():
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["+data.resolutoin=64", "data.source=/nowhere"])
    with pytest.raises(CatdogError) as caught:
        DataSettings.from_config(cfg.data)
    assert user_error(caught.value).startswith(
        "data.resolutoin is not a setting of data (did you mean data.resolution?). Options: data.balance,"
    )


def test_the_user_sees_one_line(tmp_path):
    proc = run_train("data.resolutoin=64", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: data.resolutoin is not a config key (did you mean data.resolution?)")


def test_every_bad_value_reaches_the_user_at_once(tmp_path):
    proc = run_train("data.batch_size=0", "+model.augment.blur=0.5", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: 2 config values cannot work:",
        "  data.batch_size=0 is invalid: expected a positive integer. Fix it on the command line or in configs/.",
        "  model.augment.blur=0.5 is invalid: expected a number in [0, 0.1]. Fix it on the command line or in "
        "configs/.",
    ]


@pytest.mark.parametrize(
    "override", ["model.kernel=3", "+model.kernel=3", "++model.kernel=3,5", "~model.kernel"]
)
def test_an_override_names_its_key_whatever_its_prefix(override):
    assert override_key(override) == "model.kernel"
