"""evaluate matches a folder's classes to the checkpoint's by name (case-blind), or as `classes=` maps them: never
by sorted position, which inverted every label of `Hund/`, `Katze/` against `Cat`, `Dog`."""

from __future__ import annotations

import cv2
import pytest
from helpers import make_image, run_module, train_checkpoint, write_class_folders
from test_evaluate import evaluate_in_process

from catdog.errors import CatdogError


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("classes")
    return train_checkpoint(write_class_folders(tmp / "PetImages", per_class=12), tmp)


def renamed(root, names: dict[str, str]):
    """write_class_folders' photos (Cat: horizontal stripes, Dog: vertical) in folders named `names[class]`; a
    missing class is left out."""
    for label, cls in enumerate(("Cat", "Dog")):
        if cls not in names:
            continue
        folder = root / names[cls]
        folder.mkdir(parents=True)
        for i in range(8):
            cv2.imwrite(str(folder / f"{i}.png"), make_image(label, seed=7000 + 100 * label + i))
    return root


def scores(metrics: dict) -> tuple:
    return metrics["all/acc"], metrics["confusion_matrix"], metrics["all/auroc"]


def test_folders_named_otherwise_are_an_error_until_mapped_then_score_as_their_classes(ckpt, tmp_path):
    reference = evaluate_in_process(
        ckpt, renamed(tmp_path / "en", {"Cat": "Cat", "Dog": "Dog"}), tmp_path / "ref"
    )
    german = renamed(tmp_path / "de", {"Cat": "Katze", "Dog": "Hund"})
    out = tmp_path / "de_run"
    proc = run_module(
        "catdog.evaluate",
        f"ckpt_path={ckpt}",
        f"data.source={german}",
        f"data.cache_dir={tmp_path}/cache",
        f"hydra.run.dir={out}",
        "data.progress=false",
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: data.source={german}: classes Hund, Katze are none of the classes of ckpt_path={ckpt} (Cat, Dog). "
        "Map each to one of them: classes='{Hund: CLASS, Katze: CLASS}' (e.g. classes='{Hund: Dog, Katze: Cat}')."
    )
    assert not (out / "metrics.json").exists() and not (out / "confusion_matrix.png").exists()
    mapped = evaluate_in_process(ckpt, german, tmp_path / "mapped", "classes={Hund: Dog, Katze: cat}")
    assert scores(mapped) == scores(reference)
    # case-blind, and the mapping may name only the folders that need it
    lower = renamed(tmp_path / "lower", {"Cat": "cat", "Dog": "doggo"})
    assert scores(evaluate_in_process(ckpt, lower, tmp_path / "lower_run", "classes={doggo: Dog}")) == scores(
        reference
    )


def test_a_folder_of_some_of_the_checkpoints_classes_scores_those(ckpt, tmp_path):
    three = write_class_folders(tmp_path / "three", per_class=6, classes=("Bird", "Cat", "Dog"))
    wide = train_checkpoint(three, tmp_path / "wide")  # classes Bird, Cat, Dog
    both = renamed(tmp_path / "both", {"Cat": "cat", "Dog": "dog"})
    metrics = evaluate_in_process(wide, both, tmp_path / "run")
    assert metrics["classes"] == ["Bird", "Cat", "Dog"]
    assert [metrics["per_class"][c]["support"] for c in ("Bird", "Cat", "Dog")] == [0, 8, 8]
    assert len(metrics["confusion_matrix"]) == 3 and metrics["confusion_matrix"][0] == [0, 0, 0]
    # macro averages over the classes the photos hold
    recall = [metrics["per_class"][c]["recall"] for c in ("Cat", "Dog")]
    assert metrics["all/recall"] == pytest.approx(sum(recall) / 2)


def test_a_mapping_is_checked_before_any_photo_is_decoded(ckpt, tmp_path):
    german = renamed(tmp_path / "de", {"Cat": "Katze", "Dog": "Hund"})
    cases = {
        "classes={Hund: Dgo}": r"^classes.Hund=Dgo: not a class of ckpt_path=.* \(did you mean Dog\?\)",
        "classes={Hund: Dog, Katze: Dog}": r"^classes maps Hund and Katze to Dog: each of the checkpoint's",
        "classes={Hund: Dog, hund: Dog}": r"classes names the folder hund twice \(Hund, hund\)",
        "classes=[Dog, Cat]": r"^classes=.* is invalid: expected a mapping of class folder names",
    }
    for override, message in cases.items():
        with pytest.raises(CatdogError, match=message):
            evaluate_in_process(ckpt, german, tmp_path / "out", override)
        assert not (tmp_path / "out" / "cache").exists(), override
    with pytest.raises(CatdogError, match=r"^classes.Wolf: data.source=.* has no class folder of that name"):
        evaluate_in_process(ckpt, german, tmp_path / "out", "classes={Wolf: Cat, Hund: Dog}")
    both = renamed(tmp_path / "both", {"Cat": "Cat", "Dog": "Dog"})
    with pytest.raises(CatdogError, match=r"classes Cat and Dog both match Cat of"):
        evaluate_in_process(ckpt, both, tmp_path / "out2", "classes={Dog: Cat}")
