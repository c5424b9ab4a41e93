"""Settings that change how fast a step runs, not what is learned, chosen by measuring on the machine at hand.

`model.channels_last`, `model.compile` and `threads` take `auto`: before training, each combination of the
`auto` ones runs a few training steps of the configured net (its resolution, batch size and precision, random
photos) and the fastest wins. A table of CPU names could not do this: the same code ran 1,220 images/s on one
2-core CPU with AVX512-BF16 and 334-438 on another with AMX-BF16. The result is cached per machine fingerprint
(CPU model, cores, torch version) and what sets a step's time (the layers, input, batch, precision, device, threads):
runs that differ in the optimizer, label smoothing, augmentation or seed, a sweep's jobs and an Optuna study's
trials reuse one measurement. A measurement other processes competed with is used but not cached; `remeasure_speed=true`
measures again. It is recorded in provenance.json (docs/speed.md).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from catdog.errors import CatdogError
from catdog.io import locked, write_json_atomic

log = logging.getLogger(__name__)

AUTO = "auto"
# the settings calibrated, their config keys and candidates; the first candidate is the plain one a tie goes to
CANDIDATES: dict[str, tuple] = {
    "model.channels_last": (False, True),
    "model.compile": (False, True),
    "threads": (),  # torch's threads, filled per machine: every core it may use, and one fewer
}
# a candidate must beat the plain setting by this much: timings of a few dozen steps vary by ~2-3% between runs
MARGIN = 0.05
# each candidate is timed in ROUNDS rounds of TIMED_STEPS steps, the candidates taking turns, and keeps its fastest
# round: one timing a candidate had to itself let a burst of other work decide (on a 2-core CPU, channels_last at 2
# threads once measured 0.130 s a step, slower than at 1 thread, against 0.087 s quiet, and the wrong layout was
# cached); a burst now has to hit every round of one candidate to change the choice
WARMUP_STEPS, TIMED_STEPS, ROUNDS = 3, 4, 3
# model keys that change what is learned or how it is evaluated, not the step the calibration times (forward, loss,
# backward and AdamW on random photos at data.resolution): runs that differ only in these share one measurement
NOT_TIMED = "optimizer scheduler label_smoothing augment tta progressive_resize fast_decode".split()
# other processes keeping more than this share of the calibrated threads' cores busy make a measurement unfit to
# keep: a tenth of an all-core step's time is twice the 5% MARGIN a candidate must win by, enough to flip the choice
BUSY = 0.10
# what runs a measurement: (the measurement) -> (its result, the cores other processes kept busy meanwhile or None)
Probe = Callable[[Callable[[], Any]], tuple[Any, float | None]]


def fingerprint() -> dict[str, Any]:
    """What makes timings of one machine valid on another: the CPU (or GPU), its cores, the torch build."""
    import torch

    from catdog.run.provenance import cpu_model

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "gpu": gpu, "torch": str(torch.__version__)}


def thread_candidates(cores: int) -> tuple[int, ...]:
    """Every core this run may use first (a parallel sweep's share); one fewer leaves a core to Python's own work."""
    return (cores, cores - 1) if cores > 1 else (1,)


def auto_keys(cfg: DictConfig) -> list[str]:
    """The calibrated settings this config leaves to `auto`."""
    return [key for key in CANDIDATES if OmegaConf.select(cfg, key, default=None) == AUTO]


def check_settings(cfg: DictConfig) -> None:
    """Each calibrated setting is `auto` or one of its values (threads: a positive integer or null)."""
    for key, choices in CANDIDATES.items():
        value = OmegaConf.select(cfg, key, default=KeyError)
        if value is KeyError:  # a config without it (predict, serve)
            continue
        if key == "threads":
            ok = value in (None, AUTO) or (
                isinstance(value, int) and not isinstance(value, bool) and value >= 1
            )
        else:
            ok = value == AUTO or value in choices and isinstance(value, bool)
        if not ok:
            expected = "auto, null or a number of threads" if key == "threads" else "auto, true or false"
            raise CatdogError(f"{key}={value!r} is invalid: expected {expected}. Fix it on the command line.")
    if not isinstance(cfg.get("remeasure_speed", False), bool):
        raise CatdogError(f"remeasure_speed={cfg.remeasure_speed!r} is invalid: expected true or false.")


def choose(timings: Mapping[tuple, float], margin: float = MARGIN) -> tuple:
    """The fastest candidate (seconds a step), unless it beats the first (plain) one by less than `margin`."""
    plain = next(iter(timings))
    best = min(timings, key=timings.__getitem__)
    return best if timings[best] < timings[plain] * (1 - margin) else plain


def speed_key(cfg: DictConfig, keys: Iterable[str], machine: Mapping[str, Any]) -> dict[str, Any]:
    """What sets the time of the step the calibration measures: the machine, the threads torch may use, the layers
    (every model key but NOT_TIMED, dropout as there or not: its probability costs nothing), input size and channels,
    batch, precision, device, the `auto` keys and the values of the other speed settings."""
    import torch

    model = cast(dict[str, Any], OmegaConf.to_container(cfg.model, resolve=True))
    net = {k: v for k, v in model.items() if k not in NOT_TIMED and f"model.{k}" not in CANDIDATES}
    if "dropout" in net:
        net["dropout"] = bool(net["dropout"])
    return {
        "machine": dict(machine),
        "threads_available": torch.get_num_threads(),
        "net": net,
        "batch_size": cfg.data.batch_size,
        "precision": str(cfg.trainer.get("precision")),
        "device": device(cfg),
        "auto": sorted(keys),
        "fixed": {k: OmegaConf.select(cfg, k, default=None) for k in CANDIDATES if k not in keys},
    }


def cache_key(cfg: DictConfig, keys: Iterable[str], machine: Mapping[str, Any]) -> str:
    """The cache entry of speed_key's values."""
    what = json.dumps(speed_key(cfg, keys, machine), sort_keys=True, default=str)
    return hashlib.sha256(what.encode()).hexdigest()[:16]


def device(cfg: DictConfig) -> str:
    return "cuda" if str(cfg.trainer.get("accelerator")) in ("gpu", "cuda") else "cpu"


def read_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def training_step(model, x, y, autocast: Any = None) -> Callable[[], None]:
    """One optimisation step of `model` on the batch (x, y): forward (under autocast to the dtype `autocast` where
    given), the model's own loss, backward, AdamW on the trainable weights; what the calibration and the efficiency
    and augment benchmarks time."""
    import torch

    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        with torch.autocast(x.device.type, dtype=autocast, enabled=autocast is not None):
            loss = model.loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if x.device.type == "cuda":
            torch.cuda.synchronize()

    return step


def fixed_threads(cfg: DictConfig) -> int | None:
    """`threads=4`: the training's threads, which the other settings are measured at; None for null or auto."""
    threads = cfg.get("threads")
    return threads if isinstance(threads, int) else None


def step_timer(cfg: DictConfig) -> Callable[[dict[str, Any]], float]:
    """Seconds a training step takes with some calibrated settings: the configured net on random photos, built and
    warmed up on a setting's first call, its TIMED_STEPS steps timed on every call."""
    import hydra
    import torch

    channels, res, batch = cfg.data.channels, cfg.data.resolution, cfg.data.batch_size
    on = device(cfg)
    x = torch.randint(0, 256, (batch, channels, res, res), dtype=torch.uint8, device=on)
    y = torch.arange(batch, device=on) % 2
    precision = str(cfg.trainer.get("precision"))
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
    mixed = precision.endswith("-mixed")
    threads = torch.get_num_threads()
    steps: dict[str, Callable[[], None]] = {}

    def timed(setting: dict[str, Any]) -> float:
        torch.set_num_threads(setting.get("threads") or fixed_threads(cfg) or threads)
        name = json.dumps(setting, sort_keys=True)
        if name not in steps:
            net = {k.split(".", 1)[1]: v for k, v in setting.items() if k.startswith("model.")}
            stats = {"mean": [0.5] * channels, "std": [0.25] * channels} if cfg.model.get("normalize") else {}
            model = hydra.utils.instantiate(
                OmegaConf.merge(cfg.model, net), classes=["a", "b"], _convert_="all", **stats
            ).to(on)
            steps[name] = training_step(model, x, y, dtype if mixed else None)
            for _ in range(WARMUP_STEPS):  # compilation, oneDNN's kernel choice and allocations happen here
                steps[name]()
        step = steps[name]
        start = time.perf_counter()
        for _ in range(TIMED_STEPS):
            step()
        seconds = (time.perf_counter() - start) / TIMED_STEPS
        torch.set_num_threads(threads)
        return seconds

    return timed


def contention(others: float | None, threads: int) -> float:
    """The share of `threads` cores that other processes, keeping `others` cores busy, took from the measurement:
    the machine's cores beyond those threads absorb other work first (a parallel sweep's other jobs)."""
    if others is None:  # no /proc/stat: nothing to tell by
        return 0.0
    spare = (os.cpu_count() or threads) - threads
    return max(0.0, others - spare) / threads


def measure(
    cfg: DictConfig, keys: list[str], timer: Callable[[dict[str, Any]], float] | None, probe: Probe
) -> tuple[dict[tuple, float], float]:
    """Seconds a step of each combination of the `keys` candidates (each its fastest of ROUNDS rounds, the
    candidates taking turns) and the contention it was measured under; measured twice when other processes took
    more than BUSY of its cores the first time."""
    import torch

    cores = torch.get_num_threads()
    choices = {k: thread_candidates(cores) if k == "threads" else CANDIDATES[k] for k in keys}
    settings = [dict(zip(keys, values)) for values in itertools.product(*choices.values())]
    log.info(
        "Measuring %s = auto on this machine: %d combinations x %d rounds of %d training steps of this net "
        "(%d px, %d channels, batch %d, %s, %s); once per machine and net, cached (docs/speed.md)",
        ", ".join(keys),
        len(settings),
        ROUNDS,
        WARMUP_STEPS + TIMED_STEPS,
        cfg.data.resolution,
        cfg.data.channels,
        cfg.data.batch_size,
        cfg.trainer.get("precision"),
        device(cfg),
    )
    timed = timer or step_timer(cfg)
    threads = max(s.get("threads") or fixed_threads(cfg) or cores for s in settings)
    for attempt in (1, 2):
        rounds, others = probe(
            lambda: [{tuple(s.values()): timed(s) for s in settings} for _ in range(ROUNDS)]
        )
        contended = contention(others, threads)
        if contended <= BUSY:
            break
        log.warning(
            "Other processes took %.0f%% of the %d cores the speed settings were measured on%s",
            100 * contended,
            threads,
            ": measuring again" if attempt == 1 else "",
        )
    return {t: min(r[t] for r in rounds) for t in rounds[0]}, contended


def measure_speed_settings(
    cfg: DictConfig,
    cache_path: Path,
    timer: Callable[[dict[str, Any]], float] | None = None,
    probe: Probe | None = None,
) -> dict[str, Any] | None:
    """Replace each `auto` setting of cfg with the fastest measured value; returns what was chosen and how (None
    when nothing is `auto`), also what provenance.json records. `timer` measures one setting, `probe` runs a
    measurement and tells how busy other processes kept the machine meanwhile (tests pass fakes)."""
    from catdog.run.hardware import others_cores  # imports torch: not at the config checks' import

    keys = auto_keys(cfg)
    if not keys:
        return None
    machine = fingerprint()
    key = cache_key(cfg, keys, machine)
    # one measurement at a time per cache: a parallel sweep's jobs wait for the first one's, then read it (and do
    # not time their steps while it times its own)
    with locked(cache_path):
        entry = None if cfg.get("remeasure_speed") else read_cache(cache_path).get(key)
        cached = entry is not None
        if entry is None:
            timings, contended = measure(cfg, keys, timer, probe or others_cores)
            entry = {
                "chosen": dict(zip(keys, choose(timings))),
                "seconds_per_step": {json.dumps(dict(zip(keys, t))): round(v, 5) for t, v in timings.items()},
                "machine": machine,
                "contention": round(contended, 3),
            }
            if contended <= BUSY:
                write_json_atomic(cache_path, {**read_cache(cache_path), key: entry})
            else:
                log.warning(
                    "The speed settings measured on a busy machine hold for this run only (not cached): the next "
                    "run measures again; or set %s yourself",
                    " and ".join(f"{k}=..." for k in keys),
                )
    for k, v in entry["chosen"].items():
        OmegaConf.update(cfg, k, v)
    log.info(
        "Calibrated on this machine (%s%s): %s",
        machine["cpu"],
        ", cached" if cached else "",
        ", ".join(f"{k}={v}" for k, v in entry["chosen"].items()),
    )
    return {**entry, "cached": cached, "cache": str(cache_path), "key": key}
