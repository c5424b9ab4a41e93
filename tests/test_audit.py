"""`python -m catdog.audit`: planted mislabels ranked first, copies and conflicts from the duplicate finder, the
gallery, and its clear errors."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
from helpers import make_image, read_csv, run_in_process, run_module, write_class_folders
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from catdog.audit.__main__ import audit
from catdog.audit.scores import COLUMNS, summary
from catdog.errors import CatdogError

PLANTED = ["Dog/cat_filed_as_dog_0.jpg", "Dog/cat_filed_as_dog_1.jpg"]


def audit_overrides(source, out, *extra):
    """A tiny audit: 16 px, a two-stage net, 2 folds of 6 epochs."""
    return [
        f"data.source={source}",
        f"data.cache_dir={out}/cache",
        f"hydra.run.dir={out}/run",
        "data.resolution=16",
        "data.batch_size=8",
        "data.folds=2",
        "data.progress=false",
        "model.channels=[8,16]",
        "model.augment.translate=2",
        # pinned: `auto` timed both layouts on each session's cold calibration cache and chose by a near tie, and the
        # layouts round differently: planted photos ranked 3rd and 7th with channels_last, 2nd and 9th without
        "model.channels_last=true",
        "trainer.max_epochs=15",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "audit.top=12",
        *extra,
    ]


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """24 + 24 striped photos with two cat patterns filed as dogs, a byte copy, a cat copied into Dog/ (a label
    conflict); audited once for the tests below."""
    tmp = tmp_path_factory.mktemp("audit")
    root = write_class_folders(tmp / "PetImages", per_class=24)
    for i, path in enumerate(PLANTED):
        cv2.imwrite(str(root / path), make_image(0, seed=5000 + i))
    shutil.copy(root / "Dog" / "3.jpg", root / "Dog" / "byte_copy.jpg")
    shutil.copy(root / "Cat" / "7.jpg", root / "Dog" / "cat_7_again.jpg")
    rows = run_in_process(audit, "audit", *audit_overrides(root, tmp))
    return rows, tmp / "run"


@pytest.mark.slow
def test_the_planted_mislabels_rank_first_and_every_photo_is_listed_once(audited):
    rows, run = audited
    written = read_csv(run / "audit.csv")
    assert list(written[0]) == list(COLUMNS) and written == rows
    assert len(rows) == 48 + 2 + 2 and len({r["path"] for r in rows}) == len(rows)
    rank = {r["path"]: i for i, r in enumerate(rows)}
    planted = [r for r in rows if r["path"] in PLANTED]
    assert all(r["suggested"] == "Cat" and float(r["label_score"]) < 0.5 for r in planted)
    assert max(rank[p] for p in PLANTED) < 8, "both among the first photos to look at"
    # confident learning counts a photo as mislabeled when its other class is as sure as that class's typical
    # photo: on these near-identical stripes, about half the planted ones; the label issues found are all planted
    label_issues = {r["path"] for r in rows if r["issue"] == "label"}
    assert label_issues and label_issues <= set(PLANTED)
    clean = [r for r in rows if r["path"] not in PLANTED and r["issue"] != "conflict"]
    assert max(float(r["label_score"]) for r in planted) < min(float(r["label_score"]) for r in clean)
    flagged = [i for i, r in enumerate(rows) if r["issue"]]
    assert flagged == list(range(len(flagged))), "flagged rows come first"
    assert len(flagged) <= 8, "a clean striped photo is rarely flagged"
    assert "2 conflict" in summary(rows) and summary(rows).startswith("52 photos: ")


@pytest.mark.slow
def test_copies_and_conflicts_come_from_the_duplicate_finder(audited):
    rows, _ = audited
    by_path = {r["path"]: r for r in rows}
    conflict = [by_path["Cat/7.jpg"], by_path["Dog/cat_7_again.jpg"]]
    assert [r["issue"] for r in conflict] == ["conflict", "conflict"]
    assert conflict[0]["duplicate_group"] == conflict[1]["duplicate_group"] != ""
    copies = [by_path["Dog/3.jpg"], by_path["Dog/byte_copy.jpg"]]
    # the same bytes are one photo (data.exclude would leave out both): one group, neither flagged a duplicate
    assert copies[0]["duplicate_group"] == copies[1]["duplicate_group"] != conflict[0]["duplicate_group"]
    assert "duplicate" not in {r["issue"] for r in copies}
    assert by_path["Dog/3.jpg"]["sha256"] == by_path["Dog/byte_copy.jpg"]["sha256"]


@pytest.mark.slow
def test_the_gallery_is_one_page_a_contact_sheet_and_tensorboard(audited):
    rows, run = audited
    page = (run / "audit.html").read_text()
    assert page.count("<figure") == 12 and page.count('src="data:image/jpeg;base64,') == 12
    assert "http" not in page.replace("<!doctype html>", "")
    assert rows[0]["path"] in page and "label: Dog -&gt; Cat" in page
    assert (run / "audit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert "audit/suspects" in events.Tags()["images"]
    assert sorted(p.name for p in run.glob("fold*")) == ["fold0", "fold1"]
    assert (run / "fold1" / "checkpoints" / "last.ckpt").is_file()


def test_a_class_with_fewer_photos_than_folds_is_one_line(tmp_path):
    root = write_class_folders(tmp_path / "PetImages", per_class=3)
    proc = run_module("catdog.audit", *audit_overrides(root, tmp_path, "data.folds=4"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: data.source={root}: class Cat has 3 photos, fewer than data.folds=4: each fold needs photos of "
        "every class. Add photos or lower data.folds."
    )
    assert not (tmp_path / "run" / "fold0").exists(), "nothing trained"


def test_the_audit_needs_folds_and_a_whole_number_of_suspects(tmp_path):
    root = write_class_folders(tmp_path / "PetImages", per_class=3)
    with pytest.raises(CatdogError, match=r"^data.folds=null: the audit scores each photo"):
        run_in_process(audit, "audit", *audit_overrides(root, tmp_path, "data.folds=null"))
    with pytest.raises(CatdogError, match=r"^audit.top=-1 is invalid"):
        run_in_process(audit, "audit", *audit_overrides(root, tmp_path, "audit.top=-1"))


def test_outlier_flags_follow_datalabs_rule_on_the_fit_distances():
    from catdog.audit.folds import outlier_scores

    rng = np.random.default_rng(0)
    features = 1 + rng.normal(0, 0.05, (60, 8))  # one cluster (cleanlab compares directions: cosine distance)
    features[59] = [1, -1, 1, -1, 1, -1, 1, -1]  # a photo unlike any other
    score, flagged = outlier_scores(features, np.arange(50), np.arange(50, 60))
    assert flagged.tolist() == [False] * 9 + [True]
    assert score[9] == score.min() and score[:9].min() > 0.1 and score.max() <= 1
