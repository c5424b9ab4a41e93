"""`python -m catdog.audit`: planted mislabels ranked first, copies and conflicts from the duplicate finder, the
gallery, and its clear errors."""

from __future__ import annotations

import logging
import shutil

import cv2
import numpy as np
import pytest
from helpers import make_image, photo_like, read_csv, run_in_process, run_module, write_class_folders
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from catdog.audit.__main__ import audit
from catdog.audit.scores import COLUMNS, summary
from catdog.errors import CatdogError

PLANTED = ["Dog/cat_filed_as_dog_0.jpg", "Dog/cat_filed_as_dog_1.jpg"]
NEAR_COPY = "Dog/cat_filed_as_dog_0_resaved.png"
NOISE = ["Cat/noise.png", "Dog/noise.png"]


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
    conflict), a near copy of a planted mislabel and two random-noise images; audited once for the tests below."""
    tmp = tmp_path_factory.mktemp("audit")
    root = write_class_folders(tmp / "PetImages", per_class=24)
    for i, path in enumerate(PLANTED):
        cv2.imwrite(str(root / path), make_image(0, seed=5000 + i))
    shutil.copy(root / "Dog" / "3.jpg", root / "Dog" / "byte_copy.jpg")
    shutil.copy(root / "Cat" / "7.jpg", root / "Dog" / "cat_7_again.jpg")
    # a near copy of a planted mislabel (its fold model calls both Cat), and random noise filed in each class
    cv2.imwrite(str(root / NEAR_COPY), cv2.imread(str(root / PLANTED[0])))
    for path, seed in zip(NOISE, (1, 2)):
        cv2.imwrite(
            str(root / path), np.random.default_rng(seed).integers(0, 256, (32, 40, 3), dtype=np.uint8)
        )
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("catdog.audit")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    try:
        rows = run_in_process(audit, "audit", *audit_overrides(root, tmp))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return rows, tmp / "run", "\n".join(r.getMessage() for r in records)


@pytest.mark.slow
def test_the_planted_mislabels_rank_first_and_every_photo_is_listed_once(audited):
    rows, run, _ = audited
    written = read_csv(run / "audit.csv")
    assert list(written[0]) == list(COLUMNS) and written == rows
    assert len(rows) == 48 + 2 + 2 + 1 + 2 and len({r["path"] for r in rows}) == len(rows)
    # ranked among the photos that were not planted as noise or a copy (which the audit puts first too)
    rank = {r["path"]: i for i, r in enumerate(r for r in rows if r["path"] not in [NEAR_COPY, *NOISE])}
    planted = [r for r in rows if r["path"] in PLANTED]
    assert all(r["suggested"] == "Cat" and float(r["label_score"]) < 0.5 for r in planted)
    assert max(rank[p] for p in PLANTED) < 8, "both among the first photos to look at"
    # confident learning counts a photo as mislabeled when its other class is as sure as that class's typical
    # photo: on these near-identical stripes, about half the planted ones; the label issues found are all planted
    label_issues = {r["path"] for r in rows if r["issue"] == "label"}
    assert label_issues and label_issues <= set(PLANTED)
    clean = [r for r in rows if r["path"] not in [*PLANTED, NEAR_COPY, *NOISE] and r["issue"] != "conflict"]
    assert max(float(r["label_score"]) for r in planted) < min(float(r["label_score"]) for r in clean)
    flagged = [i for i, r in enumerate(rows) if r["issue"]]
    assert flagged == list(range(len(flagged))), "flagged rows come first"
    planted_flags = {
        r["path"] for r in rows if r["path"] in [*PLANTED, NEAR_COPY, *NOISE] or r["issue"] == "conflict"
    }
    assert len([i for i in flagged if rows[i]["path"] not in planted_flags]) <= 3, (
        "a clean photo is rarely flagged"
    )
    assert "2 conflict" in summary(rows) and summary(rows).startswith("55 photos: ")


@pytest.mark.slow
def test_noise_tops_the_outlier_ranking_and_a_near_copy_is_a_duplicate(audited):
    rows, _, log = audited
    by_outlier = sorted(rows, key=lambda r: float(r["outlier_score"]))
    assert sorted(r["path"] for r in by_outlier[:2]) == NOISE
    assert all(r["issue"] == "outlier" for r in by_outlier[:2])
    ordinary = [r for r in rows if r["path"] not in NOISE]
    assert float(by_outlier[1]["outlier_score"]) < 0.5 * min(float(r["outlier_score"]) for r in ordinary)
    by_path = {r["path"]: r for r in rows}
    # the photo it copies is a label issue, and the fold model doubts the copy as much; the hashes say what it is
    assert by_path[PLANTED[0]]["issue"] == "label", [
        (r["path"], r["issue"], r["label_score"]) for r in rows[:10]
    ]
    assert float(by_path[NEAR_COPY]["label_score"]) < 0.5 and by_path[NEAR_COPY]["issue"] == "duplicate"
    assert by_path[NEAR_COPY]["duplicate_group"] == by_path[PLANTED[0]]["duplicate_group"] != ""
    # the audit says what its scores rest on
    assert "outlier scores compare image statistics across the 55 photos (they need 50 or more)" in log
    assert "label scores come from fold models" in log


@pytest.mark.slow
def test_copies_and_conflicts_come_from_the_duplicate_finder(audited):
    rows, _, _ = audited
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
    rows, run, _ = audited
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


def test_image_statistics_put_noise_first_on_a_folder_of_photos(tmp_path):
    """300 photo-like images, two of random noise and one blank: the noise scores lowest, the blank next, and
    Tukey's far-out fence flags no more than a few of the photos."""
    from catdog.audit.image_stats import outlier_scores
    from catdog.data.dataset import prepare_dataset
    from catdog.data.settings import DataSettings

    root = tmp_path / "photos"
    for seed in range(300):
        folder = root / ("Cat", "Dog")[seed % 2]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{seed}.jpg"), photo_like(96, 72, seed=seed))
    for name, seed in (("Cat/noise.png", 1), ("Dog/noise.png", 2)):
        cv2.imwrite(
            str(root / name), np.random.default_rng(seed).integers(0, 256, (72, 96, 3), dtype=np.uint8)
        )
    cv2.imwrite(str(root / "Dog/blank.png"), np.full((72, 96, 3), 200, dtype=np.uint8))
    settings = dict(
        source=str(root), resolution=48, channels=3, cache_dir=str(tmp_path / "cache"), progress=False
    )
    arrays = prepare_dataset(DataSettings.from_config(settings))
    score, flagged = outlier_scores(arrays.images)
    ranked = [arrays.photos["path"][i] for i in np.argsort(score, kind="stable")]
    assert sorted(ranked[:2]) == ["Cat/noise.png", "Dog/noise.png"] and ranked[2] == "Dog/blank.png"
    assert flagged[[arrays.photos["path"].index(p) for p in ranked[:3]]].all()
    assert flagged.sum() <= 3 + 6, "at most 2% of the photos"
    assert score.max() <= 1 and score.min() > 0


def test_the_audit_says_how_far_its_scores_can_be_trusted():
    from catdog.audit.scores import what_scores_need

    labels = np.array([0, 1] * 50)
    right = np.eye(2)[labels] * 0.8 + 0.1
    line, warnings = what_scores_need(100, labels, right, 50)
    assert "label scores come from fold models 100.0% accurate" in line and "need 50 or more" in line
    assert warnings == []
    weak = right[:20].copy()
    weak[:6] = weak[:6, ::-1]  # 70% right, as the folds of a folder of 300 photos
    _, warnings = what_scores_need(20, labels[:20], weak, 50)
    assert len(warnings) == 2 and "below 50 photos" in warnings[0]
    assert "70.0% accurate on the photos they did not train on (under 90%)" in warnings[1]
