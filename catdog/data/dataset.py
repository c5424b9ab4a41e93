"""From a source of photos to cached uint8 arrays: parallel decoding, a report of what was skipped, and the cache."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterable
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import cast

import numpy as np

from catdog.data.building import Build, Decoded, write_rows
from catdog.data.cache import CachedArrays, cache_errors, cache_key, load_cache
from catdog.data.decode import BadImage, decode_for_cache
from catdog.data.duplicates import (
    NEAR_DISTANCE,
    content_hash,
    describe_groups,
    summarize_duplicates,
)
from catdog.data.filenames import archive_kind
from catdog.data.photos import grouped_paths, photo_rows, photo_table
from catdog.data.settings import DataSettings, DecodeSettings
from catdog.data.sources import ImageSource, SourceReader, find_images, printable, resolve_root
from catdog.data.split import CROSSING_FILE, check_given_splits, groups_across_splits, write_crossing
from catdog.errors import CatdogError
from catdog.io import release_freed_memory, usable_cpus

log = logging.getLogger(__name__)
# most files one task decodes: small enough for a smooth progress bar, large enough to amortise IPC
CHUNK = 128
MIN_PER_WORKER = 32  # below this many files per process, forking costs more than it saves
_worker: dict = {}


def _init_worker() -> None:
    import cv2

    # pool.terminate() stops workers with SIGTERM: a handler inherited from the parent (submitit's on SLURM
    # ignores SIGTERM) would make the parent wait forever
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would oversubscribe


def _fork_pool(workers: int):
    """Decoding processes forked with OpenCV's thread pool shut down: a child inherits the pool's locks as they were
    (held by threads that do not exist in the child), and cv2.setNumThreads in _init_worker then waited forever
    in pthread_cond_destroy whenever this process had used OpenCV's threads before (seen in the test suite)."""
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return get_context("fork").Pool(workers, initializer=_init_worker)
    finally:
        cv2.setNumThreads(threads)


def _decode_chunk(chunk: tuple[int, int]) -> dict:
    """Decode the run of `count` files from `start` and write their rows into the build's decoding.npy; what it
    found, as the build's journal records it (catdog.data.building.Decoded.add)."""
    start, count = chunk
    reader, decode, build = _worker["reader"], _worker["decode"], _worker["build"]
    paths = _worker["paths"][start : start + count]
    rows = np.zeros((len(paths), *build.shape[1:]), dtype=np.uint8)
    ok = ["0"] * len(paths)
    found: dict = {"start": start, "failures": [], "sizes": [], "sha256": [], "phash": []}
    for i, path in enumerate(paths):
        try:
            data = reader.read(path)
        except (OSError, KeyError) as e:
            found["failures"].append((start + i, f"unreadable ({e.__class__.__name__}: {e})"))
            continue
        try:
            rows[i], size, phash = decode_for_cache(data, decode)
        except BadImage as e:
            found["failures"].append((start + i, str(e)))
            continue
        ok[i] = "1"
        found["sizes"].append(size)
        # hashing the bytes costs a few percent of decoding them
        found["sha256"].append(content_hash(data))
        found["phash"].append(phash)
    write_rows(build.rows, build.offset, start, rows)
    return {**found, "ok": "".join(ok)}


def plan_workers(n: int, requested: int) -> tuple[int, int]:
    """(processes, files per task) for n files: about four tasks per process so the slowest one finishes last."""
    workers = max(1, min(requested, n // MIN_PER_WORKER))
    return workers, max(1, min(CHUNK, -(-n // (workers * 4))))


def _decode_all(
    source: ImageSource, decode: DecodeSettings, num_workers: int, progress: bool, build: Build
) -> None:
    """Decode the files `build` has not decoded yet, each chunk written and journaled as it finishes."""
    n = len(source.paths)
    workers, chunk = plan_workers(n, num_workers)
    chunks = build.todo(chunk)  # (start, count): a worker reads the paths from its copy of source.paths
    workers = min(workers, max(1, sum(c[1] for c in chunks) // MIN_PER_WORKER))
    reader = SourceReader(source.root, source.kind)
    _worker.update(reader=reader, decode=decode, build=build, paths=source.paths)  # inherited by the workers
    pool = _fork_pool(workers) if workers > 1 else None
    try:
        # the pool takes the tasks now; tqdm's import (~12 ms, most of it its version lookup) runs while it decodes
        results = pool.imap_unordered(_decode_chunk, chunks) if pool else map(_decode_chunk, chunks)
        from tqdm import tqdm

        done = int(build.decoded.done.sum())
        with tqdm(
            total=n, initial=done, desc="Decoding images", unit="img", disable=not progress, leave=False
        ) as bar:
            for found in results:
                build.record(found)
                bar.update(len(found["ok"]))
        build.flush()
    finally:
        if pool is not None:
            pool.terminate()
        reader.close()
        _worker.clear()


def _size_stats(decoded: Decoded) -> dict:
    known = decoded.sizes[decoded.ok & (decoded.sizes[:, 0] > 0)]
    if not len(known):
        return {}
    return {
        axis: {
            "min": int(known[:, j].min()),
            "mean": round(float(known[:, j].mean()), 1),
            "max": int(known[:, j].max()),
        }
        for j, axis in enumerate(("width", "height"))
    }


def reason_counts(reasons: Iterable[str]) -> list[tuple[str, int]]:
    """(reason, files), most files first, one per kind of reason: the text before its ` (` detail. Where the
    details differ (each size of a too large image, each file's read error), the first is shown as an example."""
    kinds: dict[str, list[str]] = {}
    for reason in reasons:
        kinds.setdefault(reason.split(" (", 1)[0], []).append(reason)
    counts = [
        (same[0] if len(set(same)) == 1 else f"{kind} (e.g. {same[0][len(kind) + 2 :]}", len(same))
        for kind, same in kinds.items()
    ]
    return sorted(counts, key=lambda c: -c[1])


def summarize(report: dict, first: int = 5) -> str:
    """A short human summary of a preprocessing report: counts per class and per skip reason."""
    per_class = ", ".join(f"{k}: {v:,}" for k, v in report["per_class"].items())
    lines = [
        f"{report['n_images']:,} images ({per_class}) at {report['resolution']}x{report['resolution']}"
        f"x{report['channels']}; skipped {report['n_skipped']:,}"
    ]
    for axis, stats in report.get("image_size", {}).items():
        lines.append(
            f"  original {axis}: min {stats['min']:,}, mean {stats['mean']:,}, max {stats['max']:,} pixels"
        )
    for reason, count in reason_counts(s["reason"] for s in report["skipped"]):
        lines.append(f"  skipped {count:,}: {reason}")
    for s in report["skipped"][:first]:
        lines.append(f"    {s['path']}: {s['reason']}")
    if report["n_skipped"] > first:
        lines.append(
            f"    ... all {report['n_skipped']:,} listed in {report.get('cache_dir', 'report.json')}/report.json"
        )
    if report.get("split_folders"):
        given = ", ".join(f"{folder}/ {split}" for folder, split in sorted(report["split_folders"].items()))
        lines.append(f"splits as the source gives them: {given}")
    crossing = report.get("n_duplicates_across_splits")
    if crossing:
        lines.append(
            f"{crossing:,} duplicate groups cross the given splits (kept where the source puts them; listed in "
            f"{report.get('cache_dir', '.')}/{CROSSING_FILE})"
        )
    return "\n".join([*lines, summarize_duplicates(report)])


def locate_source(settings: DataSettings):
    """The root and kind of the images, downloading the official archive when the default folder is empty."""
    source, download_dir, download_url = str(settings.source), settings.download_dir, settings.download_url
    found = resolve_root(source, Path(settings.cache_dir))
    if found is not None:
        return found
    is_download_dir = download_dir is not None and Path(source).resolve() == Path(download_dir).resolve()
    if is_download_dir and download_url:
        # http.client and friends: ~10 ms that a local source does not need
        from catdog.data.download import download_archive

        archive = download_archive(download_url, Path(cast(str, download_dir)), progress=settings.progress)
        return archive, archive_kind(archive)
    if not Path(source).exists():
        raise CatdogError(
            f"data.source={source}: no such file or directory. Point data.source at a folder or .zip of images."
        )
    raise CatdogError(
        f"data.source={source}: no images found (class folders, Kaggle 'cat.N.jpg' names, or one .zip/.tar archive)."
    )


def prepare_dataset(settings: DataSettings) -> CachedArrays:
    """Find, decode and cache the images of `settings.source`; a second call with the same source and decode
    settings loads the cache (the split and loader settings play no part)."""
    decode = settings.decode
    cache_root = Path(settings.cache_dir)
    root, kind = locate_source(settings)
    found = find_images(root, kind, decode.layout, exclude=cache_root, split_folders=decode.split_folders)
    check_given_splits(settings.split, found.given, settings.source)  # before any photo is decoded
    files = {"root": str(root.resolve()), "layout": found.layout, "files": found.fingerprint}
    # every decode setting, the layout and split folders as found (auto resolved), the files passed over (the
    # report lists them) and the duplicate threshold, which decides the groups the cache holds
    key = cache_key(
        {
            **asdict(decode),
            **files,
            "near_duplicate_distance": NEAR_DISTANCE,
            "split_folders": found.split_folders,
            "ignored": found.ignored,
        }
    )
    del files
    found.fingerprint = []  # only the key needs it: ~16 bytes a photo through the decode
    release_freed_memory()  # the listing's strings, before the decoding processes are forked
    directory = cache_root / f"{root.name.split('.')[0]}-{decode.resolution}px-{decode.channels}ch-{key}"
    cached = load_cache(directory)
    if cached is not None:
        log.info("Loaded cached arrays from %s (%d images)", directory, len(cached.labels))
        return cached
    with cache_errors(directory):
        _build(settings, found, root, directory)
    log.info("Prepared %s", directory)  # its summary: the caller's to show
    return cast(CachedArrays, load_cache(directory))  # just written


def _build(settings: DataSettings, found: ImageSource, root: Path, directory: Path) -> None:
    """Decode the photos `found` lists (resuming a killed build of the same cache) and publish the cache."""
    decode = settings.decode
    workers = settings.num_workers if settings.num_workers and settings.num_workers > 0 else usable_cpus()
    shape = (len(found.paths), decode.resolution, decode.resolution, decode.channels)
    with Build(directory, shape) as build:
        _decode_all(found, decode, workers, settings.progress, build)
        decoded = build.decoded
        ok = decoded.ok
        if not ok.any():
            reasons = reason_counts(decoded.failures.values())[:3]
            raise CatdogError(
                f"data.source={settings.source}: none of the {len(found.paths)} image files could be decoded "
                f"({', '.join(f'{n} {r}' for r, n in reasons)})."
            )
        labels = np.asarray(found.labels, dtype=np.int64)[ok]
        failures = sorted(decoded.failures.items())
        skipped = found.ignored + [{"path": printable(found.paths[i]), "reason": r} for i, r in failures]
        counts = np.bincount(labels, minlength=len(found.classes))
        table = photo_table(decoded, labels, NEAR_DISTANCE)
        paths, members = grouped_paths(found, table)
        duplicates, conflicts = describe_groups(members, paths, labels, table["sha256"], found.classes)
        report = {
            "source": str(root),
            "layout": found.layout,
            "classes": found.classes,
            "n_images": int(ok.sum()),
            "n_skipped": len(skipped),
            "per_class": {c: int(n) for c, n in zip(found.classes, counts)},
            "skipped": skipped,
            "resolution": decode.resolution,
            "channels": decode.channels,
            "image_size": _size_stats(decoded),
            "cache_dir": str(directory),
            "near_duplicate_distance": NEAR_DISTANCE,
            "duplicates": duplicates,
            "label_conflicts": conflicts,
            "split_folders": found.split_folders,
        }
        grouped = [i for g in members for i in g]
        given = [found.given[table["index"][i]] if found.given else "" for i in grouped]
        crossing = groups_across_splits(duplicates, {"path": [paths[i] for i in grouped], "split": given})
        report["n_duplicates_across_splits"] = len(crossing)
        if crossing:  # inside the build: published with the rest, in one rename
            write_crossing(build.tmp / CROSSING_FILE, crossing)
        build.finish(labels, report, photo_rows(found, table))
