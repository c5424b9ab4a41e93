"""The time each model.augment policy adds to a training step of `experiment=fast` (64 images at 64 px, RGB):
the fastest of many calls of augment_batch against the fastest training step (forward, loss, backward, AdamW in
bf16 autocast where the CPU has it), with torch's threads, in the same session."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from benchmarks.record import benchmark, result

# the presets' and the new policies' settings: name -> model.augment
POLICIES = {
    "fast (hflip, translate 6)": {"hflip": True, "translate": 6},
    "best (+ brightness/contrast 0.1)": {"hflip": True, "translate": 8, "brightness": 0.1, "contrast": 0.1},
    "resized_crop": {"hflip": True, "resized_crop": True},
    "trivial_augment": {"hflip": True, "trivial_augment": 1.0},
    "resized_crop + trivial_augment": {"hflip": True, "resized_crop": True, "trivial_augment": 1.0},
    "augmix": {"hflip": True, "augmix": True},
    "blur 0.04": {"hflip": True, "blur": 0.04},
    "mixup 0.2": {"hflip": True, "mixup": 0.2},
    "cutmix 1.0": {"hflip": True, "cutmix": 1.0},
    "crop + trivial + mixup + cutmix": {
        "hflip": True,
        "resized_crop": True,
        "trivial_augment": 1.0,
        "mixup": 0.2,
        "cutmix": 1.0,
    },
}
FAST_NET = dict(
    channels=[16, 32, 64, 128],
    kernel=3,
    padding="same",
    convs_per_stage=2,
    batchnorm=True,
    head="gap",
    hidden=[],
)


def fastest(fn: Callable[[], object], calls: int) -> float:
    """Seconds of the fastest of `calls` calls after one warm-up: the one least disturbed by other work."""
    fn()
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def step_seconds(batch: int = 64, resolution: int = 64, calls: int = 20) -> float:
    """The fastest training step of the fast net on one uint8 batch."""
    from catdog.models.classifier import ImageClassifier
    from catdog.run.hardware import native_bf16
    from catdog.run.speed import training_step

    model = ImageClassifier(
        3, resolution, ["cat", "dog"], label_smoothing=0.1, channels_last=True, **FAST_NET
    )
    x = torch.randint(0, 256, (batch, 3, resolution, resolution), dtype=torch.uint8)
    y = torch.randint(0, 2, (batch,))
    step = training_step(model, x, y, torch.bfloat16 if native_bf16(gpu=False) else None)
    return fastest(step, calls)


def augment_seconds(augment: dict, batch: int = 64, resolution: int = 64, calls: int = 50) -> float:
    """The fastest augment_batch of `augment` on one uint8 batch."""
    from catdog.models.augment import augment_batch
    from catdog.models.augment_settings import augment_settings

    spec = augment_settings(augment, resolution)
    x = torch.randint(0, 256, (batch, 3, resolution, resolution), dtype=torch.uint8)
    y = torch.randint(0, 2, (batch,))
    return fastest(lambda: augment_batch(x, y, spec, 2), calls)


def augment_lines(step: float, times: dict[str, float]) -> list[str]:
    lines = [
        f"Training step of the fast net, 64 images at 64 px: {step * 1000:.1f} ms (fastest of its calls).",
        "",
        "| model.augment | ms per 64-image batch | share of a training step |",
        "|---|---|---|",
    ]
    for name, t in times.items():
        result(
            f"{name}: share of a fast training step (%)",
            f"{100 * t / step:.1f}",
            note=f"{t * 1000:.2f} ms a batch",
        )
    return lines + [f"| {name} | {t * 1000:.2f} | {t / step:.1%} |" for name, t in times.items()]


@benchmark
def augment(calls: int = 50) -> list[str]:
    """Each augmentation policy's time per 64-image 64 px batch and its share of a `fast` training step."""
    step = step_seconds(calls=max(calls // 2, 1))
    times = {name: augment_seconds(policy, calls=calls) for name, policy in POLICIES.items()}
    print(
        f"augment: the fast recipe's augmentation is {times[next(iter(POLICIES))] / step:.1%} of a step",
        flush=True,
    )
    return augment_lines(step, times)
