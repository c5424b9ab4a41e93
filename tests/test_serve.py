"""The demo server as a user meets it: a real uvicorn process on a free local port, its JSON endpoint with good
and bad uploads, SIGTERM, and the page itself in a real headless Chromium (skipped where none is installed)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import make_image, run_module, train_checkpoint, write_class_folders

import catdog
from benchmarks.serving import start_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out = proc.stdout.read()
    return proc.wait(timeout=30), out


def post(url: str, fields: dict[str, tuple[str, bytes]], body: bytes | None = None, query: str = ""):
    """POST a multipart form of (filename, bytes) fields, or a raw body; the status and the JSON answer."""
    boundary = uuid.uuid4().hex
    if body is None:
        body = (
            b"".join(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n".encode()
                + data
                + b"\r\n"
                for name, (filename, data) in fields.items()
            )
            + f"--{boundary}--\r\n".encode()
        )
    request = urllib.request.Request(
        f"{url}api/predict{query}",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def port_of(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


def jpeg(label: int, seed: int, size=(160, 120)) -> bytes:
    return cv2.imencode(".jpg", make_image(label, seed, size))[1].tobytes()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("serve")
    return train_checkpoint(write_class_folders(tmp / "PetImages", per_class=12), tmp)


@pytest.fixture(scope="module")
def server(ckpt, tmp_path_factory):
    proc, url = start_server(ckpt, tmp_path_factory.mktemp("run"), "max_upload_mb=0.2")
    yield url
    if proc.poll() is None:
        stop(proc)


@pytest.fixture(scope="module")
def unsure_server(ckpt, tmp_path_factory):
    proc, url = start_server(ckpt, tmp_path_factory.mktemp("run"), "min_confidence=1.0")
    yield url
    stop(proc)


def test_predict_endpoint_answers_as_the_python_api(server, ckpt, tmp_path):
    photo = tmp_path / "dog.jpg"
    photo.write_bytes(jpeg(1, seed=11))
    status, answer = post(server, {"file": ("dog.jpg", photo.read_bytes())})
    assert status == 200 and set(answer) == {"label", "probability", "probabilities"}
    expected = catdog.load(ckpt).predict([photo])[0]
    assert answer["label"] == expected["label"] in ("Cat", "Dog")
    assert answer["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)


def test_explain_adds_the_heatmap_the_page_shows(server):
    status, answer = post(server, {"file": ("cat.jpg", jpeg(0, seed=12))})
    explained_status, explained = post(server, {"file": ("cat.jpg", jpeg(0, seed=12))}, query="?explain=true")
    assert status == explained_status == 200 and explained["label"] == answer["label"]
    png = base64.b64decode(explained["heatmap"].removeprefix("data:image/png;base64,"))
    assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).shape == (120, 160, 3)


@pytest.mark.parametrize(
    ("fields", "body", "status", "message"),
    [
        ({"file": ("notes.txt", b"just some text, not a photo")}, None, 415, "notes.txt: not a usable image"),
        ({"file": ("empty.jpg", b"")}, None, 415, "empty.jpg: not a usable image"),
        ({"file": ("big.bmp", b"BM" + bytes(300_000))}, None, 413, "larger than the limit of 200,000 bytes"),
        ({"photo": ("dog.jpg", b"\xff\xd8\xff")}, None, 400, "field 'file'"),
        ({}, b"plain=text", 400, "multipart"),
    ],
)
def test_bad_uploads_get_a_json_error_and_the_server_keeps_serving(server, fields, body, status, message):
    got, answer = post(server, fields, body)
    assert got == status and message in answer["error"]
    ok, again = post(server, {"file": ("cat.jpg", jpeg(0, seed=13))})
    assert ok == 200 and again["label"] in ("Cat", "Dog")


def test_abstains_below_min_confidence(unsure_server):
    status, answer = post(unsure_server, {"file": ("cat.jpg", jpeg(0, seed=14))})
    assert status == 200 and answer["label"] == "unsure" and answer["probability"] < 1


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium)")
@pytest.mark.parametrize("which", ["server", "unsure_server"])
def test_the_page_in_a_real_browser(which, request, ckpt, tmp_path):
    """Load the page in headless Chromium, pick a photo as a user would, read the label and bars it shows."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip extra: dev)"
    )
    url = request.getfixturevalue(which)
    photo = tmp_path / "dog.jpg"
    photo.write_bytes(jpeg(1, seed=15))
    expected = catdog.load(ckpt, min_confidence=1.0 if which == "unsure_server" else 0.0).predict([photo])[0]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 700})
            page.goto(url)
            sync_api.expect(page.locator("#about")).to_contain_text("Classes: Cat, Dog")
            page.set_input_files("#files", str(photo))
            label = page.locator("[data-testid=label]")
            sync_api.expect(label).to_have_text(expected["label"], timeout=30_000)
            bars = page.locator(".bar").all_inner_texts()
            shown = {line.split()[0]: float(line.split()[-1].rstrip("%")) for line in bars}
            assert shown == pytest.approx(
                {c: 100 * p for c, p in expected["probabilities"].items()}, abs=0.06
            )
            sync_api.expect(page.locator(".card img")).to_have_attribute("src", re.compile("^data:image/png"))
            page.screenshot(path=tmp_path / "page.png", full_page=True)
        finally:
            browser.close()
    assert cv2.imread(str(tmp_path / "page.png")).shape[1] == 900


def test_requests_that_arrive_together_share_a_forward_pass():
    """The batcher with a real forward (a numpy function): concurrent photos go through in batches of at most
    max_batch, each request gets its own row back, and a lone request is not held back."""
    import asyncio
    import time

    from catdog.batching import Batcher

    sizes = []

    def forward(images: np.ndarray) -> np.ndarray:
        sizes.append(len(images))
        time.sleep(0.01)  # a forward pass takes time: requests pile up meanwhile
        return images.reshape(len(images), -1)[:, :2].astype(np.float32)

    async def main() -> tuple[list[np.ndarray], float]:
        batcher = Batcher(forward, max_batch=8, max_wait_ms=50)
        batcher.start()

        async def one(i: int) -> np.ndarray:
            async with batcher.decoding():
                await asyncio.sleep(0.001 * (i % 3))  # decoding, in a worker thread in the server
            return await batcher.submit(np.full((4, 4, 1), i, np.uint8))

        rows = await asyncio.gather(*(one(i) for i in range(40)))
        start = time.perf_counter()
        await one(7)  # nothing else decoding: no waiting for company
        alone = time.perf_counter() - start
        await batcher.stop()
        return rows, alone

    rows, alone = asyncio.run(main())
    assert [int(r[0]) for r in rows] == list(range(40))
    assert sum(sizes[:-1]) == 40 and max(sizes) == 8 and len(sizes) <= 40 // 8 + 3 and sizes[-1] == 1
    assert alone < 0.04  # the 10 ms forward, not the 50 ms wait


@pytest.fixture(scope="module")
def onnx_model(ckpt, tmp_path_factory) -> Path:
    from catdog.export import export

    return export(str(ckpt), "onnx", str(tmp_path_factory.mktemp("onnx") / "model.onnx"))


def test_an_onnx_export_serves_the_checkpoints_answers_without_a_heatmap(ckpt, onnx_model, tmp_path):
    proc, url = start_server(onnx_model, tmp_path / "run")
    try:
        with urllib.request.urlopen(f"{url}api/info", timeout=30) as response:
            info = json.loads(response.read())
        assert info["classes"] == ["Cat", "Dog"] and info["explain"] is False
        photo = jpeg(1, seed=21)
        status, answer = post(url, {"file": ("dog.jpg", photo)}, query="?explain=true")
        expected = catdog.load(ckpt).predict([photo])[0]
        assert status == 200 and set(answer) == {"label", "probability", "probabilities"}
        assert answer["label"] == expected["label"]
        assert answer["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-4)
    finally:
        code, out = stop(proc)
    assert code == 0 and "Traceback" not in out


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A small PNG whose header declares 900 megapixels: decoding it would take gigabytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(4096)))


def test_bad_uploads_get_their_4xx_under_load(server):
    """8 clients post good photos while the bad uploads arrive: every good one is answered 200, every bad one
    gets its own 4xx JSON error (bounded: 8 x 20 good requests, each bad kind 3 times)."""
    from concurrent.futures import ThreadPoolExecutor

    whole = jpeg(0, seed=30)
    bad = [
        ({"file": ("empty.jpg", b"")}, None, 415),
        ({"file": ("cut.jpg", whole[: len(whole) // 2])}, None, 415),
        ({"file": ("bomb.png", png_bomb())}, None, 415),
        ({"photo": ("dog.jpg", whole)}, None, 400),
        ({"file": ("huge.bmp", b"BM" + bytes(300_000))}, None, 413),
    ]

    def good_client(i: int) -> list[int]:
        return [post(server, {"file": ("p.jpg", jpeg(i % 2, seed=100 * i + k))})[0] for k in range(20)]

    def bad_client(_: int) -> list[tuple[int, int, str]]:
        answers = []
        for fields, body, expected in bad:
            status, answer = post(server, fields, body)
            answers.append((status, expected, answer.get("error", "")))
        return answers

    with ThreadPoolExecutor(11) as pool:
        goods = [pool.submit(good_client, i) for i in range(8)]
        bads = [pool.submit(bad_client, i) for i in range(3)]
        good_statuses = [s for f in goods for s in f.result(timeout=300)]
        bad_answers = [a for f in bads for a in f.result(timeout=300)]
    assert good_statuses == [200] * 160
    for status, expected, message in bad_answers:
        assert status == expected and message, (status, expected, message)
    assert any("too large" in message for _, _, message in bad_answers)  # the bomb, refused before decoding


def test_a_taken_port_is_one_line_and_sigterm_answers_an_upload_still_open_with_a_json_503(ckpt, tmp_path):
    """One server (each start costs seconds of imports): it serves the page; a second one on its port is one line;
    a client that stalls mid-upload: SIGTERM stops the server cleanly within its grace time, the client gets the
    JSON 503, the log names catdog (not uvicorn.error) and holds no traceback."""
    import socket
    import time

    from catdog.serve import SHUTDOWN_GRACE_S

    proc, url = start_server(ckpt, tmp_path / "run")
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url, timeout=30) as response:
        assert b'id="files"' in response.read()
    busy = run_module(
        "catdog.serve",
        f"ckpt_path={ckpt}",
        f"port={port_of(url)}",
        f"hydra.run.dir={tmp_path}/run2",
        timeout=120,
    )
    assert busy.returncode == 1 and f"port={port_of(url)}: cannot listen there" in busy.stderr

    head = (
        "POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        "Content-Length: 100000\r\n\r\n--b\r\n"
    )
    with socket.create_connection(("127.0.0.1", port_of(url)), timeout=60) as client:
        client.sendall(head.encode())
        time.sleep(0.5)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        reply = b""
        while chunk := client.recv(65536):
            reply += chunk
        waited = time.monotonic() - start
    code, out = proc.wait(timeout=30), proc.stdout.read()
    status_line, _, body = reply.decode().partition("\r\n")
    assert "503" in status_line and json.loads(body.split("\r\n\r\n", 1)[1])["error"].startswith(
        "the server is stopping"
    )
    assert SHUTDOWN_GRACE_S - 1 < waited < SHUTDOWN_GRACE_S + 10
    assert code == 0 and "Stopped." in out and "Traceback" not in out
    assert "[catdog.serve][INFO] - Shutting down" in out and "uvicorn" not in out.replace(
        "server: uvicorn", ""
    )


def test_keep_alive_answers_do_not_wait_for_a_delayed_ack(server):
    """The listening socket says TCP, so asyncio turns Nagle's algorithm off on each connection: without it every
    answer on a reused connection waited ~40 ms for the client's delayed ACK."""
    import http.client
    import socket
    import time

    from catdog.serve import bind

    with bind("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP
    connection = http.client.HTTPConnection("127.0.0.1", port_of(server), timeout=30)
    times = []
    for _ in range(7):
        start = time.perf_counter()
        connection.request("GET", "/api/info")
        assert connection.getresponse().read()
        times.append(time.perf_counter() - start)
    connection.close()
    assert sorted(times)[3] < 0.025, times  # median: ~1 ms, and 40+ ms with Nagle on


def test_batching_settings_out_of_range_are_one_line(ckpt, tmp_path):
    from catdog.batching import check_batching
    from catdog.errors import CatdogError

    proc = run_module(
        "catdog.serve", f"ckpt_path={ckpt}", "batch_max=0", f"hydra.run.dir={tmp_path}", timeout=120
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "batch_max=0: must be a positive number of photos" in proc.stderr
    with pytest.raises(CatdogError, match="batch_wait_ms=5000: must be between 0 and 1000"):
        check_batching(8, 5000)
