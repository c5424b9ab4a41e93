"""Efficiency: the fast net's achieved training FLOP/s as a fraction of this machine's bf16 matmul peak, and where
a training step's time goes.

Achieved training FLOP/s = FLOPs per image of a forward + backward pass (counted by torch's FlopCounterMode:
convolutions and matrix products, the work a peak is quoted for) x the images per second a real run trains.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.record import SHARED, benchmark, result
from benchmarks.training import read_metrics, run_training
from catdog.run.speed import training_step

EFFICIENCY_GOAL = 0.35  # the fast net's training FLOP/s / this CPU's bf16 matmul peak


def matmul_peak(n: int = 4096, repeats: int = 5, dtype: torch.dtype = torch.bfloat16) -> float:
    """FLOP/s of the fastest of `repeats` (n x n) @ (n x n) torch.matmul in `dtype` (2 n^3 FLOPs each), after one
    warm-up: what this CPU's math library reaches on the operation peaks are quoted for, with torch's threads."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def training_flops_per_sample(model: torch.nn.Module, resolution: int, batch_size: int) -> float:
    """FLOPs per image of one training step of an ImageClassifier on uint8 images of `resolution`: forward, loss
    and backward (the weight and activation gradients autograd computes), as FlopCounterMode counts them."""
    hp = model.hparams
    x = torch.randint(0, 256, (batch_size, hp.in_channels, resolution, resolution), dtype=torch.uint8)
    y = torch.randint(0, len(hp.classes), (batch_size,))
    training = model.training
    model.train()
    try:
        with FlopCounterMode(display=False) as counter:
            model.loss_fn(model(x), y).backward()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(training)
    return counter.get_total_flops() / batch_size


def efficiency_lines(flops_per_sample: float, samples_per_s: float, peak: float, goal: float) -> list[str]:
    """The benchmark's Markdown table: achieved FLOP/s against the peak, with the verdict on `goal` (a fraction)."""
    achieved = flops_per_sample * samples_per_s
    fraction = achieved / peak
    return [
        "| training GFLOP/image | images/s | achieved GFLOP/s | bf16 matmul peak GFLOP/s | fraction of peak | goal |",
        "|---|---|---|---|---|---|",
        f"| {flops_per_sample / 1e9:.3f} | {samples_per_s:,.0f} | {achieved / 1e9:,.1f} | {peak / 1e9:,.1f} "
        f"| **{fraction:.1%}** | >= {goal:.0%} {'met' if fraction >= goal else 'MISSED'} |",
    ]


# operator name fragments -> the kind of work they are, in the order they are tried (first match wins)
OP_KINDS = {
    "convolution": ("conv",),
    "batch norm": ("batch_norm",),
    "matmul": ("mm", "linear", "addmm"),
    "pooling": ("pool",),
    "activation": ("relu", "threshold", "clamp_min", "gelu", "silu"),
    "loss": ("softmax", "nll_loss"),
    "optimizer": ("_foreach", "adam", "sgd", "lerp"),
    "dtype casts and copies": ("to_copy", "copy_", "_to", "contiguous", "clone"),
}


def kind_of(op_name: str) -> str:
    name = op_name.lower()
    return next((kind for kind, parts in OP_KINDS.items() if any(p in name for p in parts)), "other")


def step_time_by_kind(
    model, resolution: int, batch_size: int, steps: int = 5, bf16: bool = True
) -> dict[str, float]:
    """Share of a training step's operator time by kind of work (convolution, batch norm, optimizer, ...): the
    self time of every operator in torch.profiler over `steps` steps (after one warm-up) of forward, loss, backward
    and AdamW in bf16 autocast: where the time goes that the convolutions' FLOP/s do not explain."""
    from torch.profiler import ProfilerActivity, profile

    hp = model.hparams
    x = torch.randint(0, 256, (batch_size, hp.in_channels, resolution, resolution), dtype=torch.uint8)
    y = torch.randint(0, len(hp.classes), (batch_size,))
    step = training_step(model, x, y, torch.bfloat16 if bf16 else None)
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        totals[kind_of(event.key)] = totals.get(kind_of(event.key), 0.0) + event.self_cpu_time_total
    whole = sum(totals.values()) or 1.0
    return {kind: t / whole for kind, t in sorted(totals.items(), key=lambda kv: -kv[1])}


def breakdown_lines(shares: dict[str, float]) -> list[str]:
    return ["| kind of work | share of step time |", "|---|---|"] + [
        f"| {kind} | {share:.1%} |" for kind, share in shares.items()
    ]


def fast_model(run_dir: Path):
    """The network of a run, rebuilt from its saved config (training statistics replaced by placeholders)."""
    import hydra
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    # `auto` speed settings as the run measured them (Hydra saved the config before catdog.run.speed ran)
    provenance = run_dir / "provenance.json"
    calibration = (
        json.loads(provenance.read_text()).get("speed_settings") or {} if provenance.exists() else {}
    )
    for key, value in calibration.get("chosen", {}).items():
        OmegaConf.update(cfg, key, value)
    channels = cfg.data.channels
    stats = {"mean": [0.5] * channels, "std": [0.25] * channels} if cfg.model.normalize else {}
    model = hydra.utils.instantiate(cfg.model, classes=["Cat", "Dog"], _convert_="all", **stats)
    return model, cfg


@benchmark
def efficiency() -> list[str]:
    """`experiment=fast`'s achieved training FLOP/s (FLOPs of a forward + backward counted by torch's
    FlopCounterMode, times the images/s of its second epoch, 60 batches, PetImages-180) as a fraction of this CPU's
    bf16 matmul peak (the best of 4096x4096 torch.matmul in bf16, before and after the run, in the same session),
    and the share of a training step's time each kind of operator takes (what limits it)."""
    from catdog.run.hardware import native_bf16

    archive = SHARED / "data" / "PetImages-180.zip"
    if not archive.exists():
        return [f"skipped: {archive} is missing"]
    peak = matmul_peak()
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        work = Path(tmp)
        common = [f"data.source={archive}", f"data.cache_dir={work / 'cache'}", "trainer.max_epochs=2"]
        limits = ["trainer.limit_train_batches=60", "trainer.limit_val_batches=2"]
        run_dir, _ = run_training(work, "run", "experiment=fast", *common, *limits)
        rate = read_metrics(run_dir)["perf/train_samples_per_s"]
        model, cfg = fast_model(run_dir)
    peak = max(peak, matmul_peak())
    resolution = model.train_resolution(1)
    flops = training_flops_per_sample(model, resolution, cfg.data.batch_size)
    lines = efficiency_lines(flops, rate, peak, EFFICIENCY_GOAL)
    bf16 = native_bf16(gpu=False)
    shares = step_time_by_kind(model, resolution, cfg.data.batch_size, bf16=bf16)
    autocast = "bf16 autocast" if bf16 else "float32: no native bf16 here"
    lines += ["", f"Where a training step's time goes (torch.profiler, operator self time, {autocast}):", ""]
    lines += breakdown_lines(shares)
    top = ", ".join(f"{kind} {share:.0%}" for kind, share in list(shares.items())[:3])
    result(
        "training FLOP/s, share of the bf16 matmul peak (%)",
        f"{100 * flops * rate / peak:.1f}",
        goal=f">= {100 * EFFICIENCY_GOAL:g}",
        met=flops * rate / peak >= EFFICIENCY_GOAL,
        note=f"{flops * rate / 1e9:.1f} of {peak / 1e9:.1f} GFLOP/s; {top} of a step",
    )
    print(f"efficiency: {flops * rate / peak:.1%} of the bf16 matmul peak", flush=True)
    return lines
