"""The parts of the `efficiency` benchmark: training FLOPs per image, the matmul peak, the row; no benchmark run."""

import json
import time

import pytest
from helpers import ROOT
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from benchmarks import efficiency, record
from catdog.models.classifier import ImageClassifier


def test_training_flops_count_the_forward_and_the_backward_pass():
    # one 3x3 conv 1->2 on 8x8 (same padding), global average pooling, a 2->2 linear layer:
    # forward 2*9*1*2*64 + 2*2*2; backward: the conv's weight gradient only (its uint8 input needs no gradient),
    # the linear layer's weight and input gradients
    net = dict(channels=[2], kernel=3, padding="same", head="gap", hidden=[], pool=1)
    conv, linear = 2 * 9 * 1 * 2 * 64, 2 * 2 * 2
    expected = (conv + linear) + (conv + 2 * linear)
    for channels_last in (False, True):
        model = ImageClassifier(1, 8, **net, channels_last=channels_last)
        assert efficiency.training_flops_per_sample(model, 8, batch_size=4) == expected
        assert all(p.grad is None for p in model.parameters())  # the counting step leaves no gradients behind


def test_matmul_peak_is_two_n_cubed_over_the_fastest_run(monkeypatch):
    ticks = iter(range(100))
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(ticks)))  # every timed matmul takes 1 s
    assert efficiency.matmul_peak(n=64, repeats=3) == 2 * 64**3
    monkeypatch.undo()
    assert 0 < efficiency.matmul_peak(n=128, repeats=2) < float("inf")


def test_the_row_gives_achieved_flops_as_a_fraction_of_the_peak():
    lines = efficiency.efficiency_lines(flops_per_sample=2e9, samples_per_s=50, peak=1e12, goal=0.35)
    assert lines[-1] == "| 2.000 | 50 | 100.0 | 1,000.0 | **10.0%** | >= 35% MISSED |"
    assert efficiency.efficiency_lines(2e9, 200, 1e12, 0.35)[-1].endswith("**40.0%** | >= 35% met |")


def test_the_fast_net_is_rebuilt_from_a_run_config(tmp_path):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=fast"])
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")  # as Hydra saves it: channels_last=auto
    chosen = {"model.channels_last": True, "threads": 2}  # what the run measured, in its provenance
    (tmp_path / "provenance.json").write_text(json.dumps({"speed_settings": {"chosen": chosen}}))
    model, run_cfg = efficiency.fast_model(tmp_path)
    assert list(model.hparams.channels) == list(cfg.model.channels) and run_cfg.data.batch_size == 64
    assert model.hparams.channels_last is True
    flops = efficiency.training_flops_per_sample(model, model.train_resolution(1), batch_size=2)
    # forward: the 8 convolutions at 64, 32, 16 and 8 px (106.7 MFLOP) and the linear layer; backward twice that,
    # less the first convolution's input gradient (its uint8 input needs none); batch norm is not counted
    convs = [(3, 16, 64), (16, 16, 64), (16, 32, 32), (32, 32, 32), (32, 64, 16), (64, 64, 16), (64, 128, 8)]
    convs.append((128, 128, 8))
    forward = sum(2 * 9 * c_in * c_out * side**2 for c_in, c_out, side in convs) + 2 * 128 * 2
    assert flops == 3 * forward - 2 * 9 * 3 * 16 * 64**2


def test_efficiency_runs_with_the_default_benchmarks():
    assert "efficiency" in record.BENCHMARKS and "efficiency" not in record.ON_REQUEST


def test_step_time_is_shared_out_by_kind_of_work():
    net = {"channels": [4, 8], "kernel": 3, "padding": "same", "head": "gap", "hidden": [], "batchnorm": True}
    model = ImageClassifier(3, 16, **net)
    shares = efficiency.step_time_by_kind(model, 16, batch_size=8, steps=2)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["convolution"] > 0 and shares["batch norm"] > 0 and shares["optimizer"] > 0
    assert list(shares.values()) == sorted(shares.values(), reverse=True)
    assert efficiency.kind_of("aten::convolution_backward") == "convolution"
    assert efficiency.kind_of("aten::native_batch_norm") == "batch norm"
    assert efficiency.breakdown_lines({"convolution": 0.5, "other": 0.5})[2] == "| convolution | 50.0% |"
