"""Speed settings chosen by measuring: the choice logic on fake timings, the cache, and a real calibration."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time

import pytest
import torch
from helpers import ROOT, tiny_overrides, train_in_process
from hydra import compose, initialize_config_dir

from catdog.errors import CatdogError
from catdog.models.classifier import ImageClassifier
from catdog.run.checks import validate
from catdog.run.hardware import others_cores
from catdog.run.memory import glibc
from catdog.run.speed import (
    BUSY,
    ROUNDS,
    cache_key,
    choose,
    contention,
    fingerprint,
    measure_speed_settings,
    step_timer,
    thread_candidates,
)


def compose_train(*overrides: str):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def idle(measurement):
    """A probe of a machine nothing else runs on."""
    return measurement(), 0.0


def test_the_fastest_wins_only_by_more_than_the_noise():
    assert choose({(False,): 1.0, (True,): 0.5}) == (True,)
    assert choose({(False,): 1.0, (True,): 0.97}) == (
        False,
    )  # 3% is within the run-to-run spread: plain stays
    assert choose({(False, 2): 1.0, (True, 2): 0.9, (True, 1): 0.6, (False, 1): 1.2}) == (True, 1)


def test_auto_settings_are_measured_once_per_machine_and_net_then_read_from_the_cache(tmp_path):
    cache = tmp_path / "speed_settings.json"
    timings = {(False, False): 0.30, (True, False): 0.10, (False, True): 0.20, (True, True): 0.12}
    measured = []

    def fake(setting):
        measured.append(setting)
        return timings[(setting["model.channels_last"], setting["model.compile"])]

    cfg = compose_train("model.channels_last=auto", "model.compile=auto")
    record = measure_speed_settings(cfg, cache, timer=fake, probe=idle)
    assert (cfg.model.channels_last, cfg.model.compile) == (True, False) and len(measured) == 4 * ROUNDS
    assert record["cached"] is False and record["machine"] == fingerprint()
    assert json.loads(cache.read_text())[record["key"]]["chosen"] == {
        "model.channels_last": True,
        "model.compile": False,
    }
    again = compose_train("model.channels_last=auto", "model.compile=auto")
    assert (
        measure_speed_settings(again, cache, timer=fake, probe=idle)["cached"] and len(measured) == 4 * ROUNDS
    )  # no new one
    assert again.model.channels_last is True
    other_net = compose_train("model.channels_last=auto", "model.compile=auto", "model.kernel=3")
    measure_speed_settings(other_net, cache, timer=fake, probe=idle)
    assert len(measured) == 8 * ROUNDS and len(json.loads(cache.read_text())) == 2
    assert (
        measure_speed_settings(compose_train(), cache, timer=fake, probe=idle) is None
    )  # nothing auto: nothing measured


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
    record = measure_speed_settings(cfg, tmp_path / "speed_settings.json", timer=bursty, probe=idle)
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
    cache = tmp_path / "speed_settings.json"
    auto = [
        "model.channels_last=auto",
        "threads=auto",
        f"paths.speed_settings={cache}",
        "trainer.fast_dev_run=true",
    ]
    train_in_process(*tiny_overrides(image_folder, tmp_path), *auto)
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
    first = provenance["speed_settings"]
    if (
        glibc() is not None
    ):  # set before the calibration timed its steps (train.yaml: keep_freed_memory: true)
        assert provenance["keep_freed_memory"].startswith("on (")
    layouts_x_threads = 2 * len(thread_candidates(torch.get_num_threads()))  # tests run one thread (conftest)
    assert first["cached"] is False and len(first["seconds_per_step"]) == layouts_x_threads
    assert all(seconds > 0 for seconds in first["seconds_per_step"].values())
    train_in_process(*tiny_overrides(image_folder, tmp_path / "again"), *auto)
    second = json.loads((tmp_path / "again" / "run" / "provenance.json").read_text())["speed_settings"]
    if first["contention"] <= BUSY:
        assert second["cached"] is True and second["chosen"] == first["chosen"]
    else:  # measured while other processes took its cores (a shared machine): not kept, measured again
        assert second["cached"] is False and first["key"] not in (
            json.loads(cache.read_text()) if cache.exists() else {}
        )


def counting_timer(measured: list):
    def fake(setting):
        measured.append(setting)
        return 0.1 if setting["model.channels_last"] else 0.2

    return fake


SAME_STEP = [
    # what a sweep or a search varies that does not change the step the calibration times: one measurement
    ("experiment=fast", "model.channels_last=auto", "model.label_smoothing=0.2"),
    ("experiment=fast", "model.channels_last=auto", "model.dropout=0.13"),  # an Optuna trial's sampled float
    ("experiment=fast", "model.channels_last=auto", "model.dropout=0.41", "model/optimizer=sgd", "seed=3"),
    ("experiment=fast", "model.channels_last=auto", "model.augment.translate=8", "model/scheduler=cosine"),
    ("experiment=fast", "model.channels_last=auto", "model.optimizer.lr=0.01", "model.tta=false"),
]


def test_runs_that_differ_only_in_what_is_learned_share_one_measurement(tmp_path, caplog):
    """Label smoothing, the dropout probability, optimizer, scheduler, augmentation, seed: one measurement, the
    first run's, logged as it starts; best_robust (best + TrivialAugment) reuses best's."""
    caplog.set_level(logging.INFO)
    cache, measured = tmp_path / "speed_settings.json", []
    for overrides in SAME_STEP:
        measure_speed_settings(compose_train(*overrides), cache, timer=counting_timer(measured), probe=idle)
    combinations = 2 * len(thread_candidates(torch.get_num_threads()))  # the presets set threads=auto too
    assert len(measured) == combinations * ROUNDS and len(json.loads(cache.read_text())) == 1
    (started,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Measuring")]
    assert started.startswith(
        f"Measuring model.channels_last, threads = auto on this machine: {combinations} combinations x {ROUNDS} "
        "rounds of 7 training steps of this net (64 px, 3 channels, batch 64, auto, cpu)"
    )
    best = compose_train("experiment=best", "model.channels_last=auto")
    robust = compose_train("experiment=best_robust", "model.channels_last=auto")
    assert cache_key(best, ["model.channels_last"], fingerprint()) == cache_key(
        robust, ["model.channels_last"], fingerprint()
    )


@pytest.mark.parametrize(
    "override",
    [
        "model.kernel=5",
        "model.channels=[16,32,64]",
        "data.resolution=48",
        "data.channels=1",
        "data.batch_size=32",
        "trainer.precision=32-true",
        "model.dropout=0.0",  # a dropout layer or none
        "model.head=flatten",
        "model.compile=true",  # a speed setting not left to auto
    ],
)
def test_what_changes_a_steps_time_gets_its_own_measurement(override):
    keys = ["model.channels_last"]
    fast = compose_train("experiment=fast", "model.channels_last=auto", "model.dropout=0.2")
    other = compose_train("experiment=fast", "model.channels_last=auto", "model.dropout=0.2", override)
    assert cache_key(fast, keys, fingerprint()) != cache_key(other, keys, fingerprint())


def test_the_threads_torch_may_use_are_part_of_the_key():
    """A parallel sweep's job (its share of the cores) does not read what a run with every core chose."""
    cfg, keys = compose_train("threads=auto"), ["threads"]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        more = cache_key(cfg, keys, fingerprint())
    finally:
        torch.set_num_threads(threads)
    assert cache_key(cfg, keys, fingerprint()) != more


def test_remeasure_speed_measures_again_and_replaces_the_entry(tmp_path):
    cache, measured = tmp_path / "speed_settings.json", []
    first = measure_speed_settings(
        compose_train("model.channels_last=auto"), cache, timer=counting_timer(measured), probe=idle
    )
    again = compose_train("model.channels_last=auto", "remeasure_speed=true")
    second = measure_speed_settings(
        again, cache, timer=lambda s: 0.3 if s["model.channels_last"] else 0.1, probe=idle
    )
    assert second["cached"] is False and second["key"] == first["key"]
    assert first["chosen"] == {"model.channels_last": True} and second["chosen"] == {
        "model.channels_last": False
    }
    assert json.loads(cache.read_text())[first["key"]]["chosen"] == {"model.channels_last": False}


def test_a_measurement_on_a_busy_machine_is_retried_then_used_but_not_cached(tmp_path, caplog):
    """Other processes on every core: measured a second time, used for this run, not written to the cache; the
    next run, on a quiet machine, measures and caches."""
    cache, measured = tmp_path / "speed_settings.json", []
    cores = os.cpu_count()

    def busy(measurement):
        return measurement(), float(cores)

    cfg = compose_train("model.channels_last=auto")
    record = measure_speed_settings(cfg, cache, timer=counting_timer(measured), probe=busy)
    assert len(measured) == 2 * 2 * ROUNDS and record["contention"] == 1.0 and not cache.exists()
    assert cfg.model.channels_last is True
    assert "measuring again" in caplog.text and "hold for this run only (not cached)" in caplog.text
    measure_speed_settings(
        compose_train("model.channels_last=auto"), cache, timer=counting_timer(measured), probe=idle
    )
    assert len(measured) == 3 * 2 * ROUNDS and len(json.loads(cache.read_text())) == 1


def test_spare_cores_absorb_other_work_before_it_contends():
    """A parallel sweep's other job on the cores this one does not use is no contention; on its own cores it is."""
    cores = os.cpu_count() or 1
    assert contention(cores - 1.0, 1) == 0.0
    assert contention(float(cores), cores) == 1.0
    assert contention(None, 1) == 0.0  # a machine that cannot tell


def test_the_probe_sees_other_processes_busy_on_the_cores():
    """Spinning processes on every core while this one sleeps: the probe counts them, not this process."""
    cores = os.cpu_count() or 1
    spin = "import time\nt = time.time()\nwhile time.time() - t < 3: pass"
    spinners = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(cores)]
    try:
        time.sleep(0.5)  # started
        _, others = others_cores(lambda: time.sleep(1.0))
    finally:
        for p in spinners:
            p.wait()
    if others is None:
        pytest.skip("no /proc/stat on this machine")
    assert others >= 0.7 * cores


def test_parallel_jobs_wait_for_one_measurement(tmp_path):
    """Two jobs of a parallel sweep starting together: the second waits for the first's measurement and reads it."""
    cache, measured = tmp_path / "speed_settings.json", []

    def slow(setting):
        time.sleep(0.01)
        return counting_timer(measured)(setting)

    configs = [compose_train("model.channels_last=auto") for _ in range(2)]  # Hydra composes in one thread
    records = []
    jobs = [
        threading.Thread(
            target=lambda cfg=cfg: records.append(measure_speed_settings(cfg, cache, timer=slow, probe=idle))
        )
        for cfg in configs
    ]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join()
    assert len(measured) == 2 * ROUNDS and sorted(r["cached"] for r in records) == [False, True]


def test_the_other_settings_are_measured_at_the_threads_the_run_is_given(monkeypatch):
    """threads=2 with model.channels_last=auto: each layout is timed at 2 threads, the threads training will use."""
    cfg = compose_train(
        "threads=2",
        "model.channels_last=auto",
        "data.resolution=16",
        "data.batch_size=2",
        "model.channels=[4]",
    )
    set_threads, seen = torch.set_num_threads, []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), set_threads(n)))
    timed = step_timer(cfg)
    assert timed({"model.channels_last": True}) > 0 and seen[0] == 2
