"""Predict with a trained checkpoint: `python -m catdog.predict ckpt_path=FILE inputs=PATH [output=FILE.csv]`.

PATH is one image, a folder (every file below it) or a zip/tar archive; no labels are needed. The CSV has one
row per image file, `path,label,probability`, or `path,skipped,<reason>` for one that cannot be used; files that
are no photos by training's own rule (.DS_Store, Thumbs.db, AppleDouble `._x`, notes.txt) are passed over, counted
in the log with training's reasons; the
label is `unsure` when the (calibrated) probability is below `min_confidence=`. `explain=true` also writes a
Grad-CAM overlay per image into `explanations/` beside the CSV (checkpoints only). ckpt_path may also be an `.onnx`
written by `catdog.export` (float or int8), run by onnxruntime with the same decoding.
From Python: `catdog.load("last.ckpt").predict(["a.jpg", array])` (or `catdog.load("last.onnx")`).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import numpy as np
from omegaconf import DictConfig

import catdog
from catdog.batching import batches
from catdog.data.decode import BadImage
from catdog.data.filenames import IMAGE_EXTENSIONS, UNSUPPORTED, passed_over
from catdog.data.sources import SourceReader, archive_kind, list_files, printable
from catdog.errors import CatdogError
from catdog.explain.gradcam import display_image, explanation_path, overlay_png, resolve_layer
from catdog.io import replace_atomic, write_csv
from catdog.run.checks import validate
from catdog.run.cli import run_entry
from catdog.runtime import BasePredictor

log = logging.getLogger(__name__)


def list_inputs(inputs: str | os.PathLike) -> tuple[SourceReader, list[str], str]:
    """The image files of a folder (recursively) or an archive, by training's file-name rule, or the one file
    given: a reader, relative paths, a prefix. The files passed over are logged with training's reasons."""
    path = Path(inputs).expanduser()
    kind = archive_kind(path) if path.is_file() else None
    if path.is_dir() or kind:
        kind = kind or "dir"
        reader, prefix = SourceReader(path, kind), str(path) if kind == "dir" else ""
        files = [p for p, _, _ in list_files(path, kind)]
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


def write_explanations(
    predictor: BasePredictor,
    folder: Path,
    names: list[str],
    datas: list[bytes],
    images: list[np.ndarray],
    layer: int | str | None,
) -> None:
    """One Grad-CAM overlay PNG per decoded input, at `folder/<its relative path>.png`."""
    for name, data, image, heat in zip(names, datas, images, predictor.heatmaps(np.stack(images), layer)):  # type: ignore[attr-defined]  # explains
        path = explanation_path(folder, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        png = overlay_png(display_image(data, image), heat)
        replace_atomic(path, lambda f, png=png: f.write(png), binary=True)  # type: ignore[misc]


def prediction_rows(
    predictor: BasePredictor,
    inputs: str,
    batch_size: int,
    explain_dir: Path | None = None,
    explain_layer: int | str | None = None,
) -> Iterator[tuple[str, str, str]]:
    """(path, label, probability) for every input file, or (path, "skipped", reason), a batch at a time;
    with `explain_dir`, a Grad-CAM overlay PNG of every decoded file there."""
    reader, paths, prefix = list_inputs(inputs)
    try:
        for b in batches(len(paths), batch_size):
            names = paths[b]
            shown = [printable(os.path.join(prefix, rel) if prefix else rel) for rel in names]
            rows: list[tuple[str, str, str] | None] = []
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
                    rows.append((name, "skipped", str(e) or e.__class__.__name__))
            if images:
                for i, probs in zip(decoded, predictor.probabilities(np.stack(images)), strict=True):
                    d = predictor.describe(probs)
                    rows[i] = (shown[i], d["label"], f"{d['probability']:.6f}")
                if explain_dir is not None:
                    done = [names[i] for i in decoded]
                    write_explanations(predictor, explain_dir, done, datas, images, explain_layer)
            yield from cast(list[tuple[str, str, str]], rows)  # every None filled in above
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
) -> Counter:
    """Write the predictions CSV (whole, or not at all); returns the count of each label and of "skipped".
    With `explain`, Grad-CAM overlays go to `explanations/` beside the CSV; a checkpoint runs on `device` (auto,
    cpu, cuda)."""
    predictor = catdog.load(ckpt_path, min_confidence, device)
    if explain and not predictor.explains:
        raise CatdogError(
            f"explain=true: Grad-CAM needs the network's gradients, which ckpt_path={ckpt_path} (an export) does "
            "not have. Give the checkpoint (.ckpt) it was exported from, or explain=false."
        )
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    explain_dir = out.parent / "explanations" if explain else None
    if explain:
        resolve_layer(predictor.net.net, explain_layer)
    counts: Counter = Counter()

    def counted(rows):
        for row in rows:
            counts[row[1]] += 1
            yield row

    rows = prediction_rows(predictor, inputs, batch_size, explain_dir, explain_layer)
    replace_atomic(out, lambda f: write_csv(f, ["path", "label", "probability"], counted(rows)), binary=False)
    return counts


def run(cfg: DictConfig) -> Counter:
    validate(cfg)
    if cfg.get("inputs") is None:
        raise CatdogError("inputs is not set: give inputs=PATH (an image, a folder or a .zip of images).")
    explain = bool(cfg.get("explain", False))
    counts = predict_to_csv(
        cfg.ckpt_path,
        str(cfg.inputs),
        str(cfg.output),
        cfg.batch_size,
        min_confidence=cfg.get("min_confidence", 0.0),
        explain=explain,
        explain_layer=cfg.get("explain_layer"),
        device=cfg.get("device", "auto"),
    )
    predicted = ", ".join(f"{k}: {v:,}" for k, v in sorted(counts.items()) if k != "skipped") or "none"
    print(
        f"Predicted {sum(counts.values()) - counts['skipped']:,} files ({predicted}); "
        f"skipped {counts['skipped']:,}. Written to {cfg.output}"
    )
    if explain:
        print(f"Grad-CAM overlays in {Path(cfg.output).parent / 'explanations'}")
    return counts


if __name__ == "__main__":
    run_entry(run, "predict")
