"""The demo server as a user meets it: a real uvicorn process on a free local port, its JSON endpoint with good
and bad uploads, SIGTERM, and the page itself in a real headless Chromium (skipped where none is installed)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import ROOT, make_image, train_checkpoint, write_class_folders

import catdog

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def start_server(ckpt: Path, run_dir: Path, *overrides: str) -> tuple[subprocess.Popen, str]:
    """`python -m catdog.serve` on port 0; returns the process and the URL it printed once listening."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "catdog.serve",
            f"ckpt_path={ckpt}",
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
    raise AssertionError(f"the server did not start ({proc.wait()}):\n{''.join(seen)[-3000:]}")


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


def test_sigterm_stops_it_cleanly_and_a_taken_port_is_one_line(ckpt, tmp_path):
    proc, url = start_server(ckpt, tmp_path / "run")
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url, timeout=30) as response:
        assert b'id="files"' in response.read()
    busy = subprocess.run(
        [
            sys.executable,
            "-m",
            "catdog.serve",
            f"ckpt_path={ckpt}",
            f"port={port_of(url)}",
            f"hydra.run.dir={tmp_path}/run2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert busy.returncode == 1 and f"port={port_of(url)}: cannot listen there" in busy.stderr
    code, out = stop(proc)
    assert code == 0 and "Stopped." in out and "Traceback" not in out


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
