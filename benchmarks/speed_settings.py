"""Speed settings: every candidate catdog.run.speed weighs (memory layout, torch.compile, threads), plus the
precision and batch size, timed as the calibration times them (the configured net's training steps on random
photos), for experiment=fast's net at 64 px: what wins on this machine and by how much; keep_freed_memory off
and on (freed_memory); and what the `auto` calibration itself costs a first run and a cached one
(calibration_cost)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from benchmarks.record import ROOT, benchmark, result
from catdog.run.hardware import resolve_precision
from catdog.run.speed import measure_speed_settings, step_timer, thread_candidates


def fast_config(*overrides: str):
    return preset_config("fast", "trainer.precision=bf16-mixed", *overrides)


def preset_config(preset: str, *overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=[f"experiment={preset}", *overrides])


def settings_rows(
    batch_sizes: tuple[int, ...] = (32, 64, 128), compiles: tuple[bool, ...] = (False, True)
) -> list[str]:
    """One row per combination: milliseconds a step, images/s, and the ratio to the first row."""
    cores = torch.get_num_threads()
    rows, plain = [], None
    combos = itertools.product(
        ("bf16-mixed", "32-true"), batch_sizes, (False, True), compiles, thread_candidates(cores)
    )
    for precision, batch, channels_last, compiled, threads in combos:
        if (precision != "bf16-mixed" or batch != batch_sizes[len(batch_sizes) // 2]) and (
            compiled or threads != cores
        ):
            continue  # compile and threads only at the preset's precision and batch
        cfg = fast_config(f"trainer.precision={precision}", f"data.batch_size={batch}")
        setting = {"model.channels_last": channels_last, "model.compile": compiled, "threads": threads}
        seconds = step_timer(cfg)(setting)
        rate = batch / seconds
        plain = plain or rate
        rows.append(
            f"| {precision} | {batch} | {channels_last} | {compiled} | {threads} | {seconds * 1000:.1f} | "
            f"{rate:,.0f} | {rate / plain:.2f}x |"
        )
        name = f"{precision}, batch {batch}, channels_last={channels_last}, compile={compiled}, {threads} threads"
        result(
            f"{name}: images/s vs the first setting (x)", f"{rate / plain:.2f}", note=f"{rate:,.0f} images/s"
        )
        print(rows[-1], flush=True)
    return [
        "| precision | batch | channels_last | compile | threads | ms/step | images/s | vs first row |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]


@benchmark(by_default=False)
def speed_settings() -> list[str]:
    """experiment=fast's net at 64 px, training steps (forward, loss, backward, AdamW) on random photos, timed by
    catdog.run.speed's own timer (3 warm-up steps, then 12): each memory layout, torch.compile on or off, each
    thread count, bf16 mixed or float32, and batch sizes 32/64/128, so the table shows what `auto` weighs here."""
    return settings_rows()


# one arm of freed_memory: glibc's thresholds are process-wide, so each arm is a fresh interpreter
FREED_MEMORY_ARM = """
import json, sys
import torch
from benchmarks.speed_settings import fast_config
from catdog.run.speed import step_timer
from catdog.run.memory import keep_freed_memory
state = keep_freed_memory(sys.argv[1] == "true")
timed = step_timer(fast_config())
setting = {"model.channels_last": True, "model.compile": False, "threads": torch.get_num_threads()}
print(json.dumps({"state": state, "seconds": min(timed(setting) for _ in range(int(sys.argv[2])))}))
"""


def freed_memory_arm(keep: bool, timings: int = 5) -> dict:
    """One arm in a fresh interpreter: {"state": what keep_freed_memory did, "seconds": the fastest of `timings`
    timings of the calibration's timer}."""
    proc = subprocess.run(
        [sys.executable, "-c", FREED_MEMORY_ARM, str(keep).lower(), str(timings)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@benchmark(by_default=False)
def freed_memory() -> list[str]:
    """`keep_freed_memory` off and on: experiment=fast's training step (64 px, batch 64, bf16, channels_last, every
    thread) timed by the calibration's timer, each arm in its own process, the arms taking turns for 3 rounds; each
    arm's fastest of 5 x 4 steps a round, its best round reported. Results are the same either way (the step's
    arithmetic does not change): this measures only speed."""
    batch = fast_config().data.batch_size
    best: dict[str, float] = {}
    states: dict[str, str] = {}
    for _ in range(3):
        for arm in ("false", "true"):
            timed = freed_memory_arm(arm == "true")
            states[arm] = timed["state"]
            best[arm] = min(best.get(arm, float("inf")), timed["seconds"])
            print(arm, timed, flush=True)
    result(
        "keep_freed_memory=true vs false, training step speed (x)",
        f"{best['false'] / best['true']:.2f}",
        note=f"{best['true'] * 1000:.1f} against {best['false'] * 1000:.1f} ms a step",
    )
    return [
        "| keep_freed_memory | what it did | ms/step | images/s | vs off |",
        "|---|---|---|---|---|",
        *(
            f"| {arm} | {states[arm]} | {best[arm] * 1000:.1f} | {batch / best[arm]:,.0f} | "
            f"{best['false'] / best[arm]:.2f}x |"
            for arm in ("false", "true")
        ),
    ]


def calibration_rows(presets: tuple[str, ...] = ("fast", "best"), *overrides: str) -> list[str]:
    """Per preset (layout and threads `auto`, its own precision resolved as a run resolves it): the seconds the
    calibration takes on a first run (a fresh cache) and on the next (the cache read), the combinations it timed,
    the contention it measured under (other processes' share of its cores) and what it chose."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in presets:
            runs = []
            for _ in range(2):  # a first run measures, the next reads the cache
                cfg = preset_config(preset, "model.channels_last=auto", "threads=auto", *overrides)
                resolve_precision(cfg.trainer)
                start = time.perf_counter()
                record = measure_speed_settings(cfg, Path(tmp) / "speed_settings.json")
                runs.append((time.perf_counter() - start, record))
            (first_s, first), (cached_s, _) = runs
            chosen = ", ".join(f"{k}={v}" for k, v in first["chosen"].items())
            rows.append(
                f"| {preset} | {cfg.data.resolution} px, batch {cfg.data.batch_size}, {cfg.trainer.precision} | "
                f"{len(first['seconds_per_step'])} | {first_s:.1f} | {cached_s * 1000:.0f} | "
                f"{first['contention']:.2f} | {chosen} |"
            )
            print(rows[-1], flush=True)
            step = f"{cfg.data.resolution} px, batch {cfg.data.batch_size}, {cfg.trainer.precision}"
            result(
                f"{preset}: speed settings measured on a first run (s)",
                f"{first_s:.1f}",
                note=f"{step}; cached read {cached_s * 1000:.0f} ms; contention {first['contention']:.2f}; {chosen}",
            )
    return [
        "| preset | step | combinations | first run (s) | cached (ms) | contention | chosen |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


@benchmark(by_default=False)
def calibration_cost() -> list[str]:
    """What `model.channels_last=auto threads=auto` costs before training: a first run measures (each combination
    for 3 rounds of 3 warm-up and 4 timed steps of the preset's net), the next reads the cache. A contention above
    0.10 means the first measurement was not cached, and the cached column timed a second measurement."""
    return calibration_rows()
