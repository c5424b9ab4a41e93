"""Every class's probability, the top K classes, photos sorted into class folders, top-5 accuracy: on trees of 3
and of 6 classes, so that nothing assumes two."""

from __future__ import annotations

import csv
import os

import cv2
import numpy as np
import pytest
from helpers import make_image, read_csv, run_module, train_checkpoint, write_class_folders, zip_tree
from test_evaluate import evaluate_in_process

import catdog
from catdog.errors import CatdogError
from catdog.predict import predict_to_csv

CLASSES = {3: ("Bird", "Cat", "Dog"), 6: ("Ant", "Bee", "Cat", "Cow", "Dog", "Emu")}


@pytest.fixture(scope="module", params=[3, 6], ids=["3-classes", "6-classes"])
def trained(request, tmp_path_factory):
    """A tiny checkpoint trained on a tree of N classes, and photos to predict: that tree's own, nested one
    folder deeper, plus a file that is not an image and one whose name holds a backslash."""
    tmp = tmp_path_factory.mktemp(f"classes{request.param}")
    tree = write_class_folders(tmp / "train", per_class=8, classes=CLASSES[request.param])
    ckpt = train_checkpoint(tree, tmp)
    photos = tmp / "photos"
    for label, name in enumerate(CLASSES[request.param]):
        (photos / "batch" / name).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(
                str(photos / "batch" / name / f"{i}.png"), make_image(label, seed=900 + i, size=(50, 30))
            )
    (photos / "broken.jpg").write_bytes(b"not a photo")  # an image file that does not decode: a skipped row
    cv2.imwrite(str(photos / "odd\\name.png"), make_image(0, seed=999))
    return request.param, ckpt, tree, photos


def rows_of(path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    return header, read_csv(path)


def test_every_class_has_its_probability_and_the_top_k_follow_them(trained, tmp_path):
    n, ckpt, _, photos = trained
    classes = list(CLASSES[n])
    out = tmp_path / "pred.csv"
    predict_to_csv(str(ckpt), str(photos), str(out), batch_size=4, topk=n - 1)
    header, rows = rows_of(out)
    tops = [f"top{k}" for k in range(1, n)]
    assert header == ["path", "label", "probability", *(f"p_{c}" for c in classes), *tops]
    assert len(rows) == 2 * n + 2
    expected = {
        str(p): r
        for p, r in zip(
            sorted(photos.rglob("*.png")), catdog.load(ckpt).predict(sorted(photos.rglob("*.png")))
        )
    }
    for row in rows:
        if row["path"].endswith("broken.jpg"):
            assert row["label"] == "skipped" and all(row[c] == "" for c in header[3:])
            continue
        probs = np.array([float(row[f"p_{c}"]) for c in classes])
        assert probs.sum() == pytest.approx(1, abs=1e-4)
        assert probs == pytest.approx([expected[row["path"]]["probabilities"][c] for c in classes], abs=1e-5)
        assert float(row["probability"]) == pytest.approx(probs.max(), abs=1e-6)
        assert row["label"] == row["top1"] == classes[int(probs.argmax())]
        ranked = [probs[classes.index(row[t])] for t in tops]
        assert len(set(row[t] for t in tops)) == n - 1 and ranked == sorted(ranked, reverse=True)


def test_photos_are_copied_into_their_predicted_class_and_abstentions_into_unsure(trained, tmp_path):
    n, ckpt, _, photos = trained
    out, sorted_into = tmp_path / "pred.csv", tmp_path / "sorted"
    predict_to_csv(str(ckpt), str(photos), str(out), batch_size=4, sort_into=str(sorted_into))
    rows = [r for r in read_csv(out) if r["label"] != "skipped"]
    copies = sorted(p.relative_to(sorted_into).as_posix() for p in sorted_into.rglob("*") if p.is_file())
    wanted = [f"{r['label']}/{os.path.relpath(r['path'], photos)}" for r in rows]
    assert copies == sorted(wanted) and len(copies) == 2 * n + 1
    odd = next(r for r in rows if r["path"].endswith("\\name.png"))
    assert (sorted_into / odd["label"] / "odd\\name.png").is_file()  # a backslash is no folder
    for r in rows:
        copy = sorted_into / r["label"] / os.path.relpath(r["path"], photos)
        assert not copy.is_symlink() and copy.read_bytes() == open(r["path"], "rb").read()
    unsure = tmp_path / "unsure"
    predict_to_csv(str(ckpt), str(photos), str(tmp_path / "u.csv"), min_confidence=1.0, sort_into=str(unsure))
    assert sorted(p.name for p in unsure.iterdir()) == ["unsure"]
    assert len([p for p in (unsure / "unsure").rglob("*") if p.is_file()]) == 2 * n + 1


def test_link_mode_links_to_the_photos_and_bad_requests_are_one_line(trained, tmp_path):
    n, ckpt, _, photos = trained
    linked = tmp_path / "linked"
    predict_to_csv(str(ckpt), str(photos), str(tmp_path / "p.csv"), sort_into=str(linked), sort_mode="link")
    links = [p for p in linked.rglob("*") if p.is_symlink()]
    assert len(links) == 2 * n + 1
    predictor = catdog.load(ckpt)
    for link in links:
        label, *rel = link.relative_to(linked).parts
        assert os.readlink(link) == str(photos.joinpath(*rel))
        assert label == predictor.predict([link])[0]["label"]
    errors = {
        f"topk={n + 1}: give a number from 1 to {n}": dict(topk=n + 1),
        "topk=-1": dict(topk=-1),
        f"sort_into={linked}: not an empty folder": dict(sort_into=str(linked)),
        "sort_mode=move: must be one of copy, link": dict(sort_into=str(tmp_path / "new"), sort_mode="move"),
        "sort_mode=link: inputs=.*is an archive": dict(sort_into=str(tmp_path / "z"), sort_mode="link"),
    }
    archive = zip_tree(photos, tmp_path / "photos.zip")
    for message, settings in errors.items():
        inputs = archive if "archive" in message else photos
        with pytest.raises(CatdogError, match=message):
            predict_to_csv(str(ckpt), str(inputs), str(tmp_path / "bad.csv"), **settings)
        assert not (tmp_path / "bad.csv").exists()
    zipped = tmp_path / "from-zip"
    predict_to_csv(str(ckpt), str(archive), str(tmp_path / "z.csv"), sort_into=str(zipped))
    assert len([p for p in zipped.rglob("*.png") if p.is_file() and not p.is_symlink()]) == 2 * n + 1


def test_the_cli_takes_topk_and_sort_into(trained, tmp_path):
    n, ckpt, _, photos = trained
    out, into = tmp_path / "pred.csv", tmp_path / "sorted"
    proc = run_module(
        "catdog.predict",
        f"ckpt_path={ckpt}",
        f"inputs={photos}",
        f"output={out}",
        "topk=2",
        f"sort_into={into}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    header, rows = rows_of(out)
    assert header[-2:] == ["top1", "top2"] and len(rows) == 2 * n + 2
    assert f"Copied each photo into {into}/<predicted class>/" in proc.stdout
    assert sum(1 for p in into.rglob("*") if p.is_file()) == 2 * n + 1


def test_evaluate_writes_every_class_probability_and_top5_above_five_classes(trained, tmp_path):
    n, ckpt, tree, _ = trained
    metrics = evaluate_in_process(ckpt, tree, tmp_path)
    assert ("all/acc_top5" in metrics) is (n > 5)
    header, rows = rows_of(tmp_path / "predictions_all.csv")
    classes = list(CLASSES[n])
    assert header == ["path", "label", "predicted", "correct", "probability", *(f"p_{c}" for c in classes)]
    assert len(rows) == metrics["n_images"] == 8 * n
    probs = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    labels = np.array([classes.index(r["label"]) for r in rows])
    assert metrics["all/acc"] == pytest.approx((probs.argmax(1) == labels).mean())
    assert [r["predicted"] for r in rows] == [classes[k] for k in probs.argmax(1)]
    if n > 5:
        top5 = np.argsort(-probs, axis=1)[:, :5]
        assert metrics["all/acc_top5"] == pytest.approx((top5 == labels[:, None]).any(1).mean())
        assert metrics["all/acc_top5"] >= metrics["all/acc"]


@pytest.mark.slow
def test_a_training_run_writes_every_class_probability_per_photo(tmp_path):
    from helpers import tiny_overrides, train_in_process

    classes = CLASSES[3]
    tree = write_class_folders(tmp_path / "three", per_class=8, classes=classes)
    train_in_process(*tiny_overrides(tree, tmp_path), "data.test_fraction=0.25", "test=true")
    for split in ("val", "test"):
        header, rows = rows_of(tmp_path / "run" / f"predictions_{split}.csv")
        assert header == [
            "path",
            "label",
            "predicted",
            "correct",
            "probability",
            *(f"p_{c}" for c in classes),
        ]
        assert rows
        for r in rows:
            probs = [float(r[f"p_{c}"]) for c in classes]
            assert sum(probs) == pytest.approx(1, abs=1e-4)
            assert r["predicted"] == classes[int(np.argmax(probs))]
            assert float(r["probability"]) == pytest.approx(max(probs), abs=1e-6)
