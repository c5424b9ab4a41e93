"""Seed groups and paired tests in the sweep summary, on fabricated sweeps whose answer is known, and the
per-image predictions a real run saves for them."""

from __future__ import annotations

import csv
import json
import subprocess

import pytest
import torch
from helpers import ROOT, run_train, tiny_datamodule, tiny_overrides
from omegaconf import OmegaConf
from scipy.stats import binomtest

from catdog.inference import Predictor
from catdog.sweeps.significance import holm, mcnemar
from catdog.sweeps.summary import write_summary


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_photos():
    assert mcnemar(10, 0) == pytest.approx(2 * 0.5**10)
    assert mcnemar(3, 9) == mcnemar(9, 3) == pytest.approx(binomtest(3, 12, 0.5).pvalue)
    assert mcnemar(6, 6) == 1.0 and mcnemar(0, 0) == 1.0


def fake_job(
    sweep,
    num: int,
    overrides: dict,
    seed: int,
    acc: float,
    wrong: set[int],
    n: int = 100,
    fold=None,
    test_wrong: set[int] | None = None,
    first: int | None = None,
):
    """A finished job: its overrides, seed, metrics and per-photo val predictions (photos `wrong` misclassified;
    with `test_wrong`, test predictions of other photos too), rows in an order that depends on the job, so only
    matching by path pairs them; `first`: the number of its first val photo."""
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save({"hydra": {"job": {"num": num}}}, job / ".hydra" / "hydra.yaml")
    OmegaConf.save({"seed": seed, "data": {"fold": fold}}, job / ".hydra" / "config.yaml")
    OmegaConf.save([f"{k}={v}" for k, v in overrides.items()], job / ".hydra" / "overrides.yaml")
    metrics = {"val/acc": acc, "val/n_images": n}
    if first is None:
        first = 0 if fold is None else fold * n  # each fold validates on other photos
    order = [first + i for i in sorted(range(n), key=lambda i: (i * (num + 7)) % n)]
    splits = {"val": (order, wrong)}
    if test_wrong is not None:
        splits["test"] = ([10_000 + i for i in order], {10_000 + i for i in test_wrong})
        metrics.update({"test/acc": 1 - len(test_wrong) / n, "test/n_images": n})
    for split, (photos, missed) in splits.items():
        with open(job / f"predictions_{split}.csv", "w", newline="") as f:
            rows = [
                (f"Cat/{i}.jpg", "Cat", "Dog" if i in missed else "Cat", int(i not in missed), 0.9)
                for i in photos
            ]
            csv.writer(f).writerows([("path", "label", "predicted", "correct", "probability"), *rows])
    (job / "metrics.json").write_text(json.dumps(metrics))


def test_seed_groups_and_paired_tests(tmp_path):
    # kernel=5 misses photos 0-1, kernel=3 misses 0-11, kernel=7 misses 0-2: per seed 10 and 1 discordant photos
    jobs = [
        ({"model.kernel": 5}, 0.98, set(range(2))),
        ({"model.kernel": 3}, 0.88, set(range(12))),
        ({"model.kernel": 7}, 0.97, set(range(3))),
    ]
    num = 0
    for overrides, acc, wrong in jobs:
        for seed, shift in ((0, 0.0), (1, 0.02)):
            fake_job(tmp_path, num, {**overrides, "seed": seed}, seed, acc - shift, wrong)
            num += 1
    markdown = write_summary(tmp_path, "val/acc", maximize=True)
    assert b"\r" not in (tmp_path / "summary.csv").read_bytes()  # plain \n line ends
    rows = read_rows(tmp_path / "summary.csv")
    by_kernel = {r["model.kernel"]: r for r in rows}
    assert {r["n_seeds"] for r in rows} == {"2"}
    assert float(by_kernel["3"]["val/acc_mean"]) == pytest.approx(0.87)
    assert float(by_kernel["3"]["val/acc_std"]) == pytest.approx(0.02 / 2**0.5)
    assert "| model.kernel=5 | 2 | 0.9700 +- 0.0141 |" in markdown
    p3, p7 = binomtest(0, 20, 0.5).pvalue, binomtest(0, 2, 0.5).pvalue
    # Holm over 2 comparisons: the smaller p doubled, the larger one as it is (it is above the doubled one)
    assert (
        f"`model.kernel=5` vs `model.kernel=3`: +10.0 pp, p={p3:.2g}, Holm p={2 * p3:.2g} over 2 "
        "comparison(s) (significant; 200 paired val photos over 2 pair(s) of runs)" in markdown
    )
    assert (
        f"`model.kernel=5` vs `model.kernel=7`: +1.0 pp, p={p7:.2g}, Holm p={p7:.2g} over 2 "
        "comparison(s) (not significant; 200 paired" in markdown
    )
    # only val predictions: val chose the best group and compares it, and the summary says so
    assert "(chosen on val) against every other group on the val split" in markdown
    assert "The same val photos chose the best group, so its lead is optimistic" in markdown
    assert "Each run's metrics rest on 100 val photos (`<split>/n_images`)." in markdown


def test_a_group_without_predictions_is_named_and_one_seed_has_no_std(tmp_path):
    fake_job(tmp_path, 0, {"model.kernel": 5}, 0, 0.9, set())
    fake_job(tmp_path, 1, {"model.kernel": 3}, 0, 0.8, set(range(10)))
    (tmp_path / "1" / "predictions_val.csv").unlink()
    markdown = write_summary(tmp_path, "val/acc", maximize=True)
    rows = read_rows(tmp_path / "summary.csv")
    assert [(r["n_seeds"], r["val/acc_std"]) for r in rows] == [("1", ""), ("1", "")]
    assert "`model.kernel=5` vs `model.kernel=3`: no paired val predictions" in markdown


@pytest.mark.slow
def test_a_run_saves_its_predictions_and_provenance(image_folder, tmp_path):
    run_train(*tiny_overrides(image_folder, tmp_path), "data.test_fraction=0.25", "test=true")
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    val, test = read_rows(run / "predictions_val.csv"), read_rows(run / "predictions_test.csv")
    # every photo of each held-out split, as the data module of the same settings assigns them
    dm = tiny_datamodule(image_folder, tmp_path / "cache", channels=1, test_fraction=0.25)
    for rows, split in ((val, "val"), (test, "test")):
        assert [r["path"] for r in rows] == [dm.arrays.photos["path"][i] for i in dm.splits[split]] and rows
    for rows, split in ((val, "val"), (test, "test")):
        assert all(
            r["path"].split("/")[0] == r["label"] and (image_folder / r["path"]).is_file() for r in rows
        )
        assert all(r["correct"] == str(int(r["label"] == r["predicted"])) for r in rows)
        assert sum(r["correct"] == "1" for r in rows) / len(rows) == pytest.approx(metrics[f"{split}/acc"])

    # one epoch: the last and the best checkpoint are the weights that scored both splits
    predictor = Predictor.from_checkpoint(run / "checkpoints" / "last.ckpt")
    predicted = predictor.predict([image_folder / r["path"] for r in val + test])
    for row, p in zip(val + test, predicted, strict=True):
        assert row["predicted"] == p["label"]
        # the CSV holds the net's own probability (what val/acc counts), the Predictor's is calibrated:
        # softmax(temperature * log(calibrated)) undoes softmax(logits / temperature)
        calibrated = torch.tensor(list(p["probabilities"].values()))
        raw = (calibrated.log() * predictor.temperature).softmax(0)
        assert float(row["probability"]) == pytest.approx(float(raw.max()), abs=1e-4)

    provenance = json.loads((run / "provenance.json").read_text())
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert provenance["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    assert "data.test_fraction=0.25" in provenance["overrides"] and provenance["command"][-1] == "test=true"
    assert provenance["versions"]["torch"] == torch.__version__
    assert provenance["data_fingerprint"] == next((tmp_path / "cache").glob("PetImages-16px-1ch-*")).name
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["catdog_provenance"] == provenance


def test_folds_of_a_setting_form_one_group_paired_fold_by_fold(tmp_path):
    for num, (kernel, fold) in enumerate([(5, 0), (5, 1), (3, 0), (3, 1)]):
        wrong = set() if kernel == 5 else {fold * 50, fold * 50 + 1}
        fake_job(
            tmp_path,
            num,
            {"model.kernel": kernel, "data.fold": fold},
            0,
            1 - len(wrong) / 50,
            wrong,
            50,
            fold,
        )
    markdown = write_summary(tmp_path, "val/acc", maximize=True)
    assert {r["n_seeds"] for r in read_rows(tmp_path / "summary.csv")} == {"2"}
    p = binomtest(0, 4, 0.5).pvalue
    assert (
        f"`model.kernel=5` vs `model.kernel=3`: +4.0 pp, p={p:.2g}, Holm p={p:.2g} over 1 comparison(s) "
        "(not significant; 100 paired val photos" in markdown
    )


def test_holm_adjusts_for_the_number_of_comparisons():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002]) and holm([0.9, 0.8]) == [1.0, 1.0]
    assert holm([]) == []


def test_groups_are_compared_on_the_test_split_and_holm_can_take_significance_away(tmp_path):
    """Val favours kernel 5 (it chose it), test has the photos that chose nothing: 6 photos that kernel 5 gets
    right and each of three others wrong. Alone p = 2/64 < 0.05; corrected for 3 comparisons it is 0.094."""
    fake_job(tmp_path, 0, {"model.kernel": 5}, 0, 0.99, {0}, test_wrong=set())
    for num, kernel in enumerate((3, 7, 9), 1):
        fake_job(tmp_path, num, {"model.kernel": kernel}, 0, 0.9, set(range(10)), test_wrong=set(range(6)))
    markdown = write_summary(tmp_path, "val/acc", maximize=True)
    p = binomtest(0, 6, 0.5).pvalue
    assert p < 0.05 < 3 * p
    for kernel in (3, 7, 9):
        assert (
            f"`model.kernel=5` vs `model.kernel={kernel}`: +6.0 pp, p={p:.2g}, Holm p={3 * p:.2g} over 3 "
            "comparison(s) (not significant; 100 paired test photos over 1 pair(s) of runs)" in markdown
        )
    assert "(chosen on val) against every other group on the test split" in markdown
    assert "optimistic" not in markdown and "rest on 100 val photos, 100 test photos" in markdown


def test_groups_without_a_common_seed_pair_their_runs_in_seed_order_on_shared_photos(tmp_path):
    # kernel 5 ran seeds 0 and 1, kernel 3 seeds 2 and 3 (all on the same val photos): pairs (0, 2) and (1, 3)
    for num, (kernel, seed, wrong) in enumerate(
        [(5, 0, set()), (5, 1, {0}), (3, 2, set(range(8))), (3, 3, set(range(9)))]
    ):
        fake_job(tmp_path, num, {"model.kernel": kernel, "seed": seed}, seed, 1 - len(wrong) / 100, wrong)
    markdown = write_summary(tmp_path, "val/acc", maximize=True)
    # discordant: pair (0, 2) 8 photos for kernel 5, pair (1, 3) photos 1-8 for kernel 5; none against it
    p = binomtest(0, 16, 0.5).pvalue
    assert (
        f"`model.kernel=5` vs `model.kernel=3`: +8.0 pp, p={p:.2g}, Holm p={p:.2g} over 1 comparison(s) "
        "(significant; 200 paired val photos over 2 pair(s) of runs, runs of different seeds paired in seed order)"
        in markdown
    )


def test_runs_that_share_no_photo_are_not_compared(tmp_path):
    """Groups whose runs validated on different photos (e.g. another data.seed split) have nothing to pair."""
    fake_job(tmp_path, 0, {"model.kernel": 5}, 0, 0.99, set())
    fake_job(tmp_path, 1, {"model.kernel": 3}, 1, 0.9, set(range(10)), first=1000)
    markdown = write_summary(tmp_path, "val/acc", maximize=True)
    assert "`model.kernel=5` vs `model.kernel=3`: their runs scored no val photo in common" in markdown
