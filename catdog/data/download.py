"""Downloading the official archive: resumable, with a progress bar, published only once complete and valid."""

from __future__ import annotations

import http.client
import logging
import os
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from catdog.errors import CatdogError

log = logging.getLogger(__name__)


def download_archive(url: str, directory: Path, timeout: float = 30, progress: bool = True) -> Path:
    """Fetch `url` into `directory`; a `.part` file is resumed with an HTTP Range request and renamed when whole."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / url.rstrip("/").split("/")[-1]
    if target.exists():
        return target
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    log.info("Downloading %s to %s%s", url, target, f" (resuming at {have:,} bytes)" if have else "")
    total = None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if have and response.status != 206:  # server ignored the range: start over
                have = 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            with (
                open(part, "ab" if have else "wb") as f,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    desc=target.name,
                    disable=not progress,
                ) as bar,
            ):
                for block in iter(lambda: response.read(1 << 20), b""):
                    f.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as e:
        if not (e.code == 416 and have):  # 416: nothing left after `have` bytes, so the .part is whole
            raise CatdogError(
                f"Could not download the dataset from {url} (HTTP {e.code} {e.reason}). Offline or moved? Copy the "
                "images onto this machine and set data.source=/path/to/them (or the CATDOG_DATA environment variable)."
            ) from e
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        kept = f" The partial file {part} is kept and resumed next time." if part.exists() else ""
        raise CatdogError(
            f"Could not download the dataset from {url} ({getattr(e, 'reason', e)}).{kept} Offline? Copy the images "
            "(a folder with one sub-folder per class, or a .zip) onto this machine and set "
            "data.source=/path/to/it (or the CATDOG_DATA environment variable)."
        ) from e
    size = part.stat().st_size
    if total is not None and size != total:
        raise CatdogError(
            f"Download of {url} stopped at {size:,} of {total:,} bytes; {part} is kept: run again to resume it, "
            "or set data.source to a copy of the images on this machine."
        )
    if target.suffix == ".zip" and not zipfile.is_zipfile(part):
        part.unlink()
        raise CatdogError(f"Download of {url} is not a valid zip archive; deleted, run again.")
    os.replace(part, target)
    return target
