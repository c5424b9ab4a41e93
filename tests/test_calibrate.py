"""Speed settings chosen by measuring: the choice logic on fake timings, the cache, and a real calibration."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import ROOT, tiny_overrides, train_in_process
from hydra import compose, initialize_config_dir

from catdog.errors import CatdogError
from catdog.models.classifier import ImageClassifier
from catdog.run.calibrate import ROUNDS, calibrate, choose, fingerprint, thread_candidates
from catdog.run.checks import validate
from catdog.run.memory import glibc


def compose_train(*overrides: str):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_the_fastest_wins_only_by_more_than_the_noise():
    assert choose({(False,): 1.0, (True,): 0.5}) == (True,)
    assert choose({(False,): 1.0, (True,): 0.97}) == (
        False,
    )  # 3% is within the run-to-run spread: plain stays
    assert choose({(False, 2): 1.0, (True, 2): 0.9, (True, 1): 0.6, (False, 1): 1.2}) == (True, 1)


def test_auto_settings_are_measured_once_per_machine_and_net_then_read_from_the_cache(tmp_path):
    cache = tmp_path / "calibration.json"
    timings = {(False, False): 0.30, (True, False): 0.10, (False, True): 0.20, (True, True): 0.12}
    measured = []

    def fake(setting):
        measured.append(setting)
        return timings[(setting["model.channels_last"], setting["model.compile"])]

    cfg = compose_train("model.channels_last=auto", "model.compile=auto")
    record = calibrate(cfg, cache, timer=fake)
    assert (cfg.model.channels_last, cfg.model.compile) == (True, False) and len(measured) == 4 * ROUNDS
    assert record["cached"] is False and record["machine"] == fingerprint()
    assert json.loads(cache.read_text())[record["key"]]["chosen"] == {
        "model.channels_last": True,
        "model.compile": False,
    }
    again = compose_train("model.channels_last=auto", "model.compile=auto")
    assert calibrate(again, cache, timer=fake)["cached"] and len(measured) == 4 * ROUNDS  # no new measurement
    assert again.model.channels_last is True
    other_net = compose_train("model.channels_last=auto", "model.compile=auto", "model.kernel=3")
    calibrate(other_net, cache, timer=fake)
    assert len(measured) == 8 * ROUNDS and len(json.loads(cache.read_text())) == 2
    assert calibrate(compose_train(), cache, timer=fake) is None  # nothing auto: nothing measured


def test_a_burst_of_other_work_in_one_round_does_not_decide(tmp_path):
    """The candidates take turns, round after round, and each keeps its fastest round: channels_last, 30% faster
    on a quiet machine, still wins when other work slowed its first round to slower than the plain layout."""
    quiet = {False: 0.12, True: 0.087}
    calls = []

    def bursty(setting):
        calls.append(setting["model.channels_last"])
        burst = 1.6 if len(calls) == 2 else 1.0  # channels_last's first round: 0.139 s, the plain one 0.12 s
        return quiet[calls[-1]] * burst

    cfg = compose_train("model.channels_last=auto")
    record = calibrate(cfg, tmp_path / "calibration.json", timer=bursty)
    assert calls == [False, True] * ROUNDS  # interleaved rounds, not one candidate's rounds back to back
    assert cfg.model.channels_last is True
    assert record["seconds_per_step"] == {
        '{"model.channels_last": false}': 0.12,
        '{"model.channels_last": true}': 0.087,
    }


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.compile=fast", "model.compile='fast' is invalid: expected auto, true or false"),
        ("threads=0", "threads=0 is invalid: expected auto, null or a number of threads"),
    ],
)
def test_a_bad_speed_setting_is_one_line(override, message):
    with pytest.raises(CatdogError, match=message):
        validate(compose_train(override))


def test_the_model_never_sees_auto():
    with pytest.raises(
        CatdogError, match="model.channels_last and model.compile=auto are measured by train.py"
    ):
        ImageClassifier(3, 16, channels=[4], kernel=3, hidden=[], channels_last="auto")


def test_a_real_run_calibrates_records_it_and_reuses_it(image_folder, tmp_path):
    cache = tmp_path / "calibration.json"
    auto = [
        "model.channels_last=auto",
        "threads=auto",
        f"paths.calibration={cache}",
        "trainer.fast_dev_run=true",
    ]
    train_in_process(*tiny_overrides(image_folder, tmp_path), *auto)
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
    first = provenance["calibration"]
    if (
        glibc() is not None
    ):  # set before the calibration timed its steps (train.yaml: keep_freed_memory: true)
        assert provenance["keep_freed_memory"].startswith("on (")
    layouts_x_threads = 2 * len(thread_candidates(torch.get_num_threads()))  # tests run one thread (conftest)
    assert first["cached"] is False and len(first["seconds_per_step"]) == layouts_x_threads
    assert all(seconds > 0 for seconds in first["seconds_per_step"].values())
    train_in_process(*tiny_overrides(image_folder, tmp_path / "again"), *auto)
    second = json.loads((tmp_path / "again" / "run" / "provenance.json").read_text())["calibration"]
    assert second["cached"] is True and second["chosen"] == first["chosen"]
