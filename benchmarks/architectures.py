"""Architectures (issue 50): `model=resnet` against `fast`'s ConvNet at the same resolution, epochs, data and training
recipe, chosen on val (test=false on seeds no preset was scored on): best val accuracy, training images/s and the
share of this machine's matmul peak each reaches (bf16's where the CPU has it natively, else float32's: the
precision `fast` trains in)."""

from __future__ import annotations

import statistics
from pathlib import Path

from benchmarks.accuracy import run_folder
from benchmarks.efficiency import fast_model, matmul_peak, training_flops_per_sample
from benchmarks.record import SHARED, bench_seeds, benchmark, mean_std, result, seed_range
from benchmarks.training import read_metrics, run_training

SEEDS = bench_seeds([30, 31, 32])
SPEED = ["model.channels_last=true", "threads=2"]  # fixed for both, not measured per run
# fast's ConvNet keys that a resnet does not take
CONVNET_ONLY = ["padding", "convs_per_stage", "pool_after_conv", "head", "hidden"]
CANDIDATES = {
    "convnet (experiment=fast)": ["experiment=fast"],
    # fast's widths as residual stages of one basic block, the first at full resolution (as fast's first stage)
    "resnet (fast's widths)": [
        "experiment=fast",
        "model=resnet",
        *(f"~model.{key}" for key in CONVNET_ONLY),
        "model.channels=[16,32,64,128]",
        "model.stride=[1,2,2,2]",
    ],
}


def candidate_run(name: str, overrides: list[str], seed: int, source: Path, work: Path) -> dict:
    """One training run of a candidate (test not scored): best val acc, images/s, training FLOPs per image."""
    run_dir, _ = run_training(
        work,
        name.split()[0],
        *overrides,
        *SPEED,
        "test=false",
        f"seed={seed}",
        f"data.source={source}",
        f"data.cache_dir={work / 'cache'}",
    )
    metrics = read_metrics(run_dir)
    model, cfg = fast_model(run_dir)
    flops = training_flops_per_sample(model, model.train_resolution(1), cfg.data.batch_size)
    row = {
        "name": name,
        "seed": seed,
        "val": metrics["val/acc_best"],
        "images_s": metrics["perf/train_samples_per_s"],
        "flops": flops,
    }
    print(row, flush=True)
    return row


def training_peak() -> tuple[str, float]:
    """The matmul peak of the precision the runs train in (`trainer.precision=auto`): bf16 where this CPU has it
    natively, else float32 (emulated bf16 is slower than float32, and its 4096-wide product takes minutes)."""
    import torch

    from catdog.run.hardware import native_bf16

    if native_bf16(gpu=False):
        return "bf16", matmul_peak(dtype=torch.bfloat16)
    return "float32 (no native bf16 here)", matmul_peak(dtype=torch.float32)


def architecture_lines(rows: list[dict], peak: float, peak_name: str = "bf16") -> list[str]:
    """A row per candidate and seed, then each candidate's means, recorded."""
    lines = [
        f"| candidate | seed | best val acc | images/s | training GFLOP/image | share of {peak_name} peak |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['name']} | {r['seed']} | {r['val']:.4f} | {r['images_s']:.0f} | {r['flops'] / 1e9:.3f} "
        f"| {r['flops'] * r['images_s'] / peak:.1%} |"
        for r in rows
    ]
    lines += ["", f"{peak_name} matmul peak {peak / 1e9:.1f} GFLOP/s. Means over the seeds:", ""]
    for name, mine in by_candidate(rows).items():
        seeds = seed_range([r["seed"] for r in mine])
        val = mean_std([100 * r["val"] for r in mine], 2)
        speed = mean_std([r["images_s"] for r in mine], 0)
        share = mean_std([100 * r["flops"] * r["images_s"] / peak for r in mine], 1)
        result(f"{name}: best val acc (%)", val, seeds=seeds)
        result(f"{name}: training images/s", speed, seeds=seeds)
        result(f"{name}: share of the {peak_name} matmul peak (%)", share, seeds=seeds)
        lines.append(f"- {name}: best val acc {val} %, {speed} images/s, {share} % of the {peak_name} peak")
    return lines


def by_candidate(rows: list[dict]) -> dict[str, list[dict]]:
    """The rows of each candidate, in the order the candidates first appear."""
    return {name: [r for r in rows if r["name"] == name] for name in dict.fromkeys(r["name"] for r in rows)}


def verdict(rows: list[dict]) -> str:
    """Whether a residual candidate beats the ConvNet on val at no more time (images/s at least the ConvNet's)."""
    means = {
        name: {k: statistics.fmean(r[k] for r in mine) for k in ("val", "images_s")}
        for name, mine in by_candidate(rows).items()
    }
    (base, ref), *others = means.items()
    better = [n for n, m in others if m["val"] > ref["val"] and m["images_s"] >= ref["images_s"]]
    if better:
        return f"{better[0]} beats {base} on val at no more time: a preset candidate for fresh test seeds."
    return f"No candidate beats {base} on val at no more time: {base} stays the preset."


@benchmark
def architectures() -> list[str]:
    """Every candidate on every seed of PetImages-180 (one decoded cache per seed, shared by the candidates)."""
    archive = SHARED / "data" / "PetImages-180.zip"
    if not archive.exists():
        return [f"skipped: {archive} is missing"]
    peak_name, peak = training_peak()
    rows = []
    for seed in SEEDS:
        with run_folder(f"architectures-{seed}") as work:  # BENCH_KEEP=DIR keeps the runs (their checkpoints)
            rows += [
                candidate_run(name, overrides, seed, archive, work) for name, overrides in CANDIDATES.items()
            ]
    peak = max(peak, training_peak()[1])
    return [*architecture_lines(rows, peak, peak_name), "", verdict(rows)]
