"""The audit's pictures of its top suspects: audit.html (one self-contained page, the photos inlined), audit.png
(a contact sheet) and the same sheet in TensorBoard, each photo with its given and suggested label."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from catdog.data.cache import CachedArrays
from catdog.data.filenames import archive_kind
from catdog.data.sources import SourceReader
from catdog.io import replace_atomic, save_figure

THUMBNAIL = 160  # pixels, the longer side of each photo in the gallery


def thumbnails(arrays: CachedArrays, indices: np.ndarray) -> list[np.ndarray]:
    """RGB photos (longer side THUMBNAIL) read from data.source; the cached network input where a file is gone."""
    root = Path(arrays.report["source"])
    reader = SourceReader(root, archive_kind(root) or "dir") if root.exists() else None
    out = []
    for i in indices.tolist():
        image = None
        if reader is not None:
            try:
                data = np.frombuffer(reader.read(arrays.photos["path"][i]), np.uint8)
                image = cv2.imdecode(data, cv2.IMREAD_COLOR)
            except (OSError, KeyError, cv2.error):
                image = None
        if image is None:
            cached = np.asarray(arrays.images[i])
            image = cv2.cvtColor(cached, cv2.COLOR_GRAY2BGR if cached.shape[2] == 1 else cv2.COLOR_RGB2BGR)
        scale = THUMBNAIL / max(image.shape[:2])
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
        out.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    if reader is not None:
        reader.close()
    return out


def caption(row: dict) -> str:
    """`label: Cat -> Dog`, `outlier: Dog`, ...: the issue, the given label and the suggested one where it differs."""
    change = f" -> {row['suggested']}" if row["suggested"] != row["label"] else ""
    return f"{row['issue'] or 'ok'}: {row['label']}{change}"


def contact_sheet(images: list[np.ndarray], rows: list[dict]) -> Figure:
    """The photos in a grid, each titled with its rank, caption and scores."""
    n = max(len(images), 1)
    cols = min(n, 8)
    grid_rows = math.ceil(n / cols)
    fig = Figure(figsize=(1.9 * cols, 2.3 * grid_rows), dpi=100)
    FigureCanvasAgg(fig)
    for k, (image, row) in enumerate(zip(images, rows)):
        ax = fig.add_subplot(grid_rows, cols, k + 1)
        ax.imshow(image)
        ax.set_xticks([])
        ax.set_yticks([])
        scores = f"label {float(row['label_score']):.2f} outlier {float(row['outlier_score']):.2f}"
        ax.set_title(f"{k + 1}. {caption(row)}\n{scores}", fontsize=7)
    if not images:
        fig.text(0.5, 0.5, "no photos", ha="center", va="center")
    fig.tight_layout()
    return fig


def data_uri(image: np.ndarray) -> str:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def gallery_html(images: list[np.ndarray], rows: list[dict], title: str) -> str:
    """One page, no outside files: a card per photo with its rank, path, given and suggested label, scores."""
    cards = []
    for k, (image, row) in enumerate(zip(images, rows)):
        group = f" · copies: group {row['duplicate_group']}" if row["duplicate_group"] else ""
        cards.append(
            f'<figure class="{html.escape(row["issue"] or "ok")}"><img src="{data_uri(image)}" alt="">'
            f"<figcaption><b>{k + 1}. {html.escape(caption(row))}</b><br>"
            f"<code>{html.escape(row['path'])}</code><br>label score {row['label_score']} · outlier score "
            f"{row['outlier_score']}{html.escape(group)}</figcaption></figure>"
        )
    style = (
        "body{font-family:sans-serif;margin:1em}main{display:flex;flex-wrap:wrap;gap:8px}"
        "figure{margin:0;width:190px;padding:4px;border:3px solid #ccc;font-size:12px;word-break:break-all}"
        "figure img{display:block;margin:auto;max-width:180px}.label{border-color:#d33}"
        ".outlier{border-color:#e90}.duplicate{border-color:#39c}.conflict{border-color:#939}"
    )
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1><p>Worst first. Border: red = label, "
        "orange = outlier, blue = duplicate, purple = conflict. The full list is audit.csv; clear a row's issue "
        f"to keep that photo under data.exclude.</p><main>{''.join(cards)}</main></body></html>\n"
    )


def write_gallery(
    arrays: CachedArrays, rows: list[dict], order: np.ndarray, top: int, output_dir: Path, loggers: list
) -> None:
    """audit.html, audit.png and the TensorBoard figure `audit/suspects` of the first `top` rows."""
    shown = min(top, len(rows))
    images = thumbnails(arrays, order[:shown])
    title = f"catdog audit of {arrays.report['source']}: the {shown} worst of {len(rows):,} photos"
    page = gallery_html(images, rows[:shown], title)
    replace_atomic(output_dir / "audit.html", lambda f: f.write(page), binary=False)
    figure = contact_sheet(images, rows[:shown])
    save_figure(output_dir / "audit.png", figure)
    for lg in loggers:
        if hasattr(lg.experiment, "add_figure"):
            lg.experiment.add_figure("audit/suspects", figure, 0)
        lg.finalize("success")
