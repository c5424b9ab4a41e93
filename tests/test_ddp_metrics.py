"""Under DDP, val/acc and val/n_images count every val photo once: DistributedSampler's padding (a split of odd size
on 2 processes scores one photo twice) is neither counted nor calibrated on."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import read_csv, run_train, tiny_datamodule, tiny_overrides

from catdog.models.classifier import ImageClassifier
from catdog.models.shards import split_order


@pytest.mark.slow
def test_a_ddp_run_counts_each_val_photo_once(image_folder, tmp_path):
    data = ["data.val_fraction=0.2"]
    dm = tiny_datamodule(image_folder, tmp_path / "cache", channels=1, val_fraction=0.2)
    n_val = len(dm.splits["val"])
    assert n_val % 2 == 1, "an odd split: one process's share is padded"
    run_train(*tiny_overrides(image_folder, tmp_path), *data, "trainer=ddp_cpu", "trainer.devices=2")
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val/n_images"] == n_val == len(read_csv(run / "predictions_val.csv"))
    model = ImageClassifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu").eval()
    x, y = dm.dataset("val").__getitems__(list(range(n_val)))
    with torch.no_grad():
        accuracy = (model.predict_logits(x).argmax(1) == y).float().mean().item()
    assert metrics["val/acc"] == pytest.approx(accuracy)
    rows = read_csv(run / "predictions_val.csv")
    assert metrics["val/acc"] == pytest.approx(sum(int(r["correct"]) for r in rows) / n_val)
    (best,) = (run / "checkpoints").glob("epoch*.ckpt")
    assert best.name == f"epoch000-acc{accuracy:.4f}.ckpt"


def test_gathered_shares_are_put_back_in_split_order_without_padding():
    # 5 photos on 2 processes: process 0 scored 0, 2, 4; process 1 scored 1, 3 and photo 0 again (padding)
    gathered = torch.tensor([[0, 2, 4], [1, 3, 0]])
    assert split_order(gathered, 5).tolist() == [0, 1, 2, 3, 4]
