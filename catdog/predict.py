"""Predict with a trained checkpoint: `python -m catdog.predict ckpt_path=FILE inputs=PATH [output=FILE.csv]`.

PATH is one image, a folder (every file below it) or a zip/tar archive; no labels are needed. The CSV has one
row per image file, `path,label,probability,p_<class>...` (every class's probability), or `path,skipped,<reason>`
for one that cannot be used; files that are no photos by training's own rule (.DS_Store, Thumbs.db, AppleDouble
`._x`, notes.txt) are passed over, counted in the log with training's reasons; the label is `unsure` when the
(calibrated) probability is below `min_confidence=`. `topk=K` adds the K most probable classes (`top1..topK`);
`sort_into=DIR` copies (or, with `sort_mode=link`, links) each photo into `DIR/<label>/`. `explain=true` also writes a
Grad-CAM overlay per image into `explanations/` beside the CSV (checkpoints only). ckpt_path may also be an `.onnx`
written by `catdog.export` (float or int8), run by onnxruntime with the same decoding.
From Python: `catdog.load("last.ckpt").predict(["a.jpg", array])` (or `catdog.load("last.onnx")`).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, cast

import numpy as np
from omegaconf import DictConfig

import catdog
from catdog.batching import batches
from catdog.data.decode import BadImage
from catdog.data.filenames import IMAGE_EXTENSIONS, UNSUPPORTED, archive_kind, passed_over
from catdog.data.listing import list_files
from catdog.data.sources import SourceReader, printable
from catdog.errors import CatdogError
from catdog.explain.gradcam import display_image, explanation_path, overlay_png, resolve_layer
from catdog.io import path_within, replace_atomic, write_csv
from catdog.run.checks import validate
from catdog.runtime import UNSURE, BasePredictor, probability_cells, probability_columns
from catdog.shell.cli import run_entry

log = logging.getLogger(__name__)
SORT_MODES = ("copy", "link")


def list_inputs(inputs: str | os.PathLike) -> tuple[SourceReader, list[str], str]:
    """The image files of a folder (recursively) or an archive, by training's file-name rule, or the one file
    given: a reader, relative paths, a prefix. The files passed over are logged with training's reasons."""
    path = Path(inputs).expanduser()
    kind = archive_kind(path) if path.is_file() else None
    if path.is_dir() or kind:
        kind = kind or "dir"
        reader, prefix = SourceReader(path, kind), str(path) if kind == "dir" else ""
        files = list(list_files(path, kind).paths)
        reasons = [passed_over(p) for p in files]
        # a photo in a format OpenCV does not read gets its row, with the fix
        paths = [p for p, r in zip(files, reasons) if r is None or r.startswith(UNSUPPORTED)]
        passed = Counter(r for r in reasons if r and not r.startswith(UNSUPPORTED))
        if passed:
            log.info(
                "Passed over %d files that are no photos: %s",
                sum(passed.values()),
                ", ".join(f"{n} {r}" for r, n in sorted(passed.items(), key=lambda c: (-c[1], c[0]))),
            )
    elif path.is_file():
        reader, paths, prefix = SourceReader(path.parent, "dir"), [path.name], str(path.parent)
    else:
        raise CatdogError(
            f"inputs={inputs}: no such file or directory. Give an image, a folder or a .zip/.tar."
        )
    if not paths:
        raise CatdogError(
            f"inputs={inputs}: no image files found ({', '.join(IMAGE_EXTENSIONS)}). Give an image, a folder of "
            "images or a .zip/.tar."
        )
    return reader, paths, prefix


class Decoded(NamedTuple):
    """One batch's decoded inputs, for what is done with each beside its CSV row (overlays, sorted copies)."""

    names: list[str]  # relative to the input folder, archive or file's folder
    files: list[str | None]  # where each is on disk; None: an archive member
    datas: list[bytes]
    images: np.ndarray  # the network inputs (N, H, W, C) uint8
    labels: list[str]  # predicted, or "unsure"


def explanation_writer(predictor: BasePredictor, folder: Path, layer: int | str | None) -> Callable:
    """One Grad-CAM overlay PNG per decoded input, at `folder/<its relative path>.png`."""

    def write(batch: Decoded) -> None:
        heats = predictor.heatmaps(batch.images, layer)  # type: ignore[attr-defined]  # explains
        for name, data, image, heat in zip(batch.names, batch.datas, batch.images, heats):
            path = explanation_path(folder, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            png = overlay_png(display_image(data, image, resize=predictor.resize), heat)
            replace_atomic(path, lambda f, png=png: f.write(png), binary=True)  # type: ignore[misc]

    return write


def photo_sorter(folder: Path, mode: str) -> Callable:
    """Each decoded input copied (mode copy: its bytes, and its file's times) or linked (mode link: a symbolic
    link to the file) into `folder/<predicted label or unsure>/<its relative path>`."""

    def write(batch: Decoded) -> None:
        for name, file, data, label in zip(batch.names, batch.files, batch.datas, batch.labels):
            path = path_within(folder / label, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            if mode == "link":
                os.symlink(os.path.abspath(cast(str, file)), path)  # link mode is refused for archives
                continue
            replace_atomic(path, lambda f, data=data: f.write(data), binary=True)  # type: ignore[misc]
            if file is not None:
                shutil.copystat(file, path)

    return write


def check_sorting(sort_into: str | None, mode: str, inputs: str) -> None:
    """sort_mode is copy or link; sort_into, if given, a new or empty folder; link only for files on disk."""
    if mode not in SORT_MODES:
        raise CatdogError(f"sort_mode={mode}: must be one of {', '.join(SORT_MODES)}.")
    if sort_into is None:
        return
    folder = Path(sort_into).expanduser()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise CatdogError(
            f"sort_into={sort_into}: not an empty folder. Give a new or empty folder: predict sorts every photo "
            "into it anew, and would mix this run's labels with what is there."
        )
    if mode == "link" and Path(inputs).expanduser().is_file() and archive_kind(Path(inputs).expanduser()):
        raise CatdogError(
            f"sort_mode=link: inputs={inputs} is an archive, whose members cannot be linked to. Give sort_mode=copy, "
            "or unpack it and give the folder."
        )


def check_topk(topk: int | None, classes: list[str]) -> int:
    """topk as a count of columns: null or 0 gives none, else 1 up to the number of classes."""
    if topk is None or topk == 0:
        return 0
    if not (isinstance(topk, int) and not isinstance(topk, bool) and 1 <= topk <= len(classes)):
        raise CatdogError(
            f"topk={topk}: give a number from 1 to {len(classes)} (the model's classes: {', '.join(classes)}), "
            "or null for no top1..topK columns."
        )
    return topk


def csv_header(classes: list[str], topk: int = 0) -> list[str]:
    """`path,label,probability`, a `p_<class>` column per class, then `top1..topK`."""
    return [
        "path",
        "label",
        "probability",
        *probability_columns(classes),
        *(f"top{k + 1}" for k in range(topk)),
    ]


def prediction_rows(
    predictor: BasePredictor, inputs: str, batch_size: int, topk: int = 0, sinks: Sequence[Callable] = ()
) -> Iterator[tuple[str, ...]]:
    """`csv_header`'s row for every input file (label `skipped` and the reason for a file that is not a usable
    image, its other cells empty), a batch at a time; each sink is called with every batch's `Decoded`."""
    reader, paths, prefix = list_inputs(inputs)
    blank = ("",) * (len(predictor.classes) + topk)
    try:
        for b in batches(len(paths), batch_size):
            names = paths[b]
            files = [os.path.join(prefix, rel) if prefix else None for rel in names]
            shown = [printable(file or rel) for file, rel in zip(files, names)]
            rows: list[tuple[str, ...] | None] = []
            images, decoded, datas = [], [], []
            for i, name in enumerate(shown):
                try:
                    if reason := passed_over(names[i]):
                        raise BadImage(reason)
                    data = reader.read(names[i])
                    images.append(predictor.decode(data))
                    decoded.append(i)
                    datas.append(data)
                    rows.append(None)
                except (OSError, KeyError, BadImage) as e:
                    rows.append((name, "skipped", str(e) or e.__class__.__name__, *blank))
            if images:
                labels = []
                for i, probs in zip(decoded, predictor.probabilities(np.stack(images)), strict=True):
                    d = predictor.describe(probs)
                    top = [predictor.classes[k] for k in np.argsort(-probs, kind="stable")[:topk]]
                    rows[i] = (
                        shown[i],
                        d["label"],
                        f"{d['probability']:.6f}",
                        *probability_cells(probs),
                        *top,
                    )
                    labels.append(d["label"])
                batch = Decoded(
                    [names[i] for i in decoded], [files[i] for i in decoded], datas, np.stack(images), labels
                )
                for sink in sinks:
                    sink(batch)
            yield from cast(list[tuple[str, ...]], rows)  # every None filled in above
    finally:
        reader.close()


def predict_to_csv(
    ckpt_path: str,
    inputs: str,
    output: str,
    batch_size: int = 256,
    min_confidence: float = 0.0,
    explain: bool = False,
    explain_layer: int | str | None = None,
    device: str = "cpu",
    topk: int | None = None,
    sort_into: str | None = None,
    sort_mode: str = "copy",
) -> Counter:
    """Write the predictions CSV (whole, or not at all); returns the count of each label and of "skipped".
    With `explain`, Grad-CAM overlays go to `explanations/` beside the CSV; a checkpoint runs on `device` (auto,
    cpu, cuda); `topk` adds the top1..topK classes; `sort_into` copies (sort_mode copy) or links (link) each photo
    into `<sort_into>/<predicted>/`, `unsure/` for an abstention."""
    check_sorting(sort_into, sort_mode, inputs)
    predictor = catdog.load(ckpt_path, min_confidence, device)
    topk = check_topk(topk, predictor.classes)
    if explain and not predictor.explains:
        raise CatdogError(
            f"explain=true: Grad-CAM needs the network's gradients, which ckpt_path={ckpt_path} (an export) does "
            "not have. Give the checkpoint (.ckpt) it was exported from, or explain=false."
        )
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    sinks = []
    if explain:
        resolve_layer(predictor.net.net, explain_layer)
        sinks.append(explanation_writer(predictor, out.parent / "explanations", explain_layer))
    if sort_into is not None:
        sinks.append(photo_sorter(Path(sort_into).expanduser(), sort_mode))
    counts: Counter = Counter()

    def counted(rows):
        for row in rows:
            counts[row[1]] += 1
            yield row

    rows = counted(prediction_rows(predictor, inputs, batch_size, topk, sinks))
    header = csv_header(predictor.classes, topk)
    replace_atomic(out, lambda f: write_csv(f, header, rows), binary=False)
    return counts


def run(cfg: DictConfig) -> Counter:
    validate(cfg)
    if cfg.get("inputs") is None:
        raise CatdogError("inputs is not set: give inputs=PATH (an image, a folder or a .zip of images).")
    explain = bool(cfg.get("explain", False))
    sort_into = cfg.get("sort_into")
    sort_mode = cfg.get("sort_mode", "copy")
    counts = predict_to_csv(
        cfg.ckpt_path,
        str(cfg.inputs),
        str(cfg.output),
        cfg.batch_size,
        min_confidence=cfg.get("min_confidence", 0.0),
        explain=explain,
        explain_layer=cfg.get("explain_layer"),
        device=cfg.get("device", "auto"),
        topk=cfg.get("topk"),
        sort_into=None if sort_into is None else str(sort_into),
        sort_mode=sort_mode,
    )
    predicted = ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items()) if k != "skipped") or "none"
    print(
        f"Predicted {sum(counts.values()) - counts['skipped']:,} files ({predicted}); "
        f"skipped {counts['skipped']:,}. Written to {cfg.output}"
    )
    if explain:
        print(f"Grad-CAM overlays in {Path(cfg.output).parent / 'explanations'}")
    if sort_into is not None:
        how = "Linked" if sort_mode == "link" else "Copied"
        where = Path(str(sort_into)) / "<predicted class>"
        print(f"{how} each photo into {where}/ ({UNSURE}/ below min_confidence)")
    return counts


if __name__ == "__main__":
    run_entry(run, "predict", usage=__doc__)
