"""The server under load: `python -m catdog.serve` on loopback driven by concurrent clients, for the checkpoint and
its int8 ONNX export.

Bounded: each concurrency level sends REQUESTS requests or stops after LEVEL_SECONDS, whichever comes first; the
clients and the server share this machine's cores (the figures are what one machine can do, clients included).
Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
import zipfile
from pathlib import Path

import numpy as np

from benchmarks import deploy
from benchmarks.record import ROOT, SHARED, benchmark, result

LEVELS = (1, 8, 32)
# requests before the first figure and the first memory reading, at the most clients: the server's largest batches
# (and their buffers in torch's or ONNX Runtime's allocator) are formed here, so later growth is per request
WARMUP = 1_000
REQUESTS = 3_000  # per level: with the warm-up, 10,000 requests per model
LEVEL_SECONDS = 120.0  # a level stops here even if REQUESTS were not all sent
PHOTOS = 64  # distinct photos the clients cycle through
# issue 30: one request per forward pass answered ~35 requests/s on this 2-core machine (64 px fast checkpoint)
BEFORE_RPS, SPEEDUP_GOAL, P99_GOAL_MS, RSS_GROWTH_GOAL_MB = 35, 4, 150, 20


def archive_photos(archive: Path, count: int) -> list[bytes]:
    """The first `count` JPEGs of a zip, in name order: real photos of the sizes users send."""
    with zipfile.ZipFile(archive) as zf:
        names = sorted(n for n in zf.namelist() if n.lower().endswith((".jpg", ".jpeg")))[:count]
        return [zf.read(n) for n in names]


def multipart(photo: bytes) -> tuple[bytes, str]:
    """A browser's upload of one photo as the form field `file`: the body and its Content-Type."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + photo
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


class Connection(http.client.HTTPConnection):
    """A keep-alive client connection with Nagle's algorithm off: http.client sends the headers and the body in
    two writes, and the body would wait for the server's delayed ACK of the headers (~40 ms a request), a stall
    of this client that browsers and curl do not have."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def rss_mb(pid: int) -> float:
    """The process's resident memory (VmRSS), MB."""
    found = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(found.group(1)) / 1024 if found else float("nan")


def start_server(model: Path, run_dir: Path, *overrides: str) -> tuple[subprocess.Popen, str]:
    """`python -m catdog.serve ckpt_path=MODEL port=0`: the process and the URL it printed once listening (its
    later output stays in the pipe: read or drain it). The tests start their servers here too."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "catdog.serve",
            f"ckpt_path={model}",
            "port=0",
            f"hydra.run.dir={run_dir}",
            *overrides,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen = []
    for line in proc.stdout:  # ends when the process does
        seen.append(line)
        if match := re.search(r"on (http://\S+/) ", line):
            return proc, match.group(1)
    raise RuntimeError(
        f"catdog.serve ckpt_path={model} did not start (exit {proc.wait()}):\n{''.join(seen)[-3000:]}"
    )


def start(model: Path, run_dir: Path) -> tuple[subprocess.Popen, int]:
    """The server on 127.0.0.1 (serve.yaml's host) with its output drained; the process and its port."""
    proc, url = start_server(model, run_dir)
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
    return proc, int(urllib.parse.urlsplit(url).port)


def drive(
    port: int, bodies: list[tuple[bytes, str]], concurrency: int, requests: int, seconds: float
) -> dict:
    """`concurrency` clients, each on its own keep-alive connection, post photos until `requests` were sent or
    `seconds` passed: requests/s, latency percentiles (ms) and the count of answers other than 200."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    sent = iter(range(requests))
    deadline = time.perf_counter() + seconds

    def client() -> None:
        connection = Connection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < deadline:
            with lock:
                i = next(sent, None)
            if i is None:
                break
            body, content_type = bodies[i % len(bodies)]
            begin = time.perf_counter()
            try:
                connection.request("POST", "/api/predict", body, {"Content-Type": content_type})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = Connection("127.0.0.1", port, timeout=60)
            with lock:
                latencies.append(time.perf_counter() - begin)
                errors[0] += not ok
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    begin = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - begin
    ms = np.array(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(ms),
        "errors": errors[0],
        "rps": len(ms) / wall,
        "p50": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        "p99": float(np.percentile(ms, 99)) if len(ms) else float("nan"),
    }


def load_test(model: Path, photos: list[bytes], run_dir: Path) -> tuple[list[dict], float, float]:
    """Every level against one server: the rows, and its resident memory after the warm-up and at the end (MB)."""
    bodies = [multipart(p) for p in photos]
    proc, port = start(model, run_dir)
    try:
        drive(port, bodies, max(LEVELS), WARMUP, LEVEL_SECONDS)
        before = rss_mb(proc.pid)
        rows = [{**drive(port, bodies, c, REQUESTS, LEVEL_SECONDS), "rss": rss_mb(proc.pid)} for c in LEVELS]
        after = rows[-1]["rss"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return rows, before, after


def serve_lines(models: dict[str, Path], photos: list[bytes], work: Path) -> list[str]:
    lines = [
        "| model | clients | requests | errors | requests/s | p50 ms | p99 ms | server MB after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for name, model in models.items():
        rows, before, after = load_test(model, photos, work / f"run-{len(notes)}")
        lines += [
            f"| {name} | {r['concurrency']} | {r['requests']:,} | {r['errors']} | {r['rps']:,.0f} | "
            f"{r['p50']:.1f} | {r['p99']:.1f} | {r['rss']:.0f} |"
            for r in rows
        ]
        at8 = next(r for r in rows if r["concurrency"] == 8)
        met = (
            at8["rps"] >= SPEEDUP_GOAL * BEFORE_RPS
            and at8["p99"] <= P99_GOAL_MS
            and sum(r["errors"] for r in rows) == 0
            and after - before <= RSS_GROWTH_GOAL_MB
        )
        result(
            f"{name}: requests/s at 8 clients vs one forward per request (x)",
            f"{at8['rps'] / BEFORE_RPS:.1f}",
            goal=f">= {SPEEDUP_GOAL}, p99 <= {P99_GOAL_MS} ms, no errors, memory +{RSS_GROWTH_GOAL_MB} MB",
            met=met,
            note=f"p99 {at8['p99']:.0f} ms, {sum(r['errors'] for r in rows)} errors, memory {after - before:+.0f} MB",
        )
        notes.append(
            f"- {name}: {at8['rps'] / BEFORE_RPS:.1f}x the ~{BEFORE_RPS} requests/s of one forward per request "
            f"at 8 clients, p99 {at8['p99']:.0f} ms; server memory {before:.0f} MB after {WARMUP:,} warm-up "
            f"requests, {after:.0f} MB after {sum(r['requests'] for r in rows):,} more. Goal (>= {SPEEDUP_GOAL}x, "
            f"p99 <= {P99_GOAL_MS} ms, no errors, memory within {RSS_GROWTH_GOAL_MB} MB): "
            f"{'met' if met else 'MISSED'}."
        )
        print(notes[-1], flush=True)
    return [*lines, "", *notes]


@benchmark(by_default=False)
def serve() -> list[str]:
    """`python -m catdog.serve` on 127.0.0.1 for each checkpoint (--ckpt, else a fresh experiment=fast run) and its
    int8 ONNX export: 1, 8 and 32 concurrent clients on keep-alive connections posting PetImages-180 photos
    (multipart, as the page does); requests/s, p50/p99 latency, errors, and the server's resident memory."""
    archive = SHARED / "data" / "PetImages-180.zip"
    if not archive.exists():
        return [f"skipped: {archive} is missing"]
    photos = archive_photos(archive, PHOTOS)
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        work = Path(tmp)
        models = {}
        for i, ckpt in enumerate(deploy.checkpoints(work)):
            _, int8 = deploy.export_int8(ckpt, work / f"export-{i}")
            models |= {f"{ckpt.name} (checkpoint)": ckpt, f"{ckpt.name} (ONNX int8)": int8}
        return serve_lines(models, photos, work)
