"""Downloading the official archive, against a local HTTP server with Range support that can fail on cue."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import write_class_folders, zip_tree

from catdog.data import prepare_dataset
from catdog.data.download import download_archive
from catdog.data.settings import DataSettings
from catdog.errors import CatdogError


class ArchiveHandler(BaseHTTPRequestHandler):
    """Serves `server.payload` at any path; honours `Range: bytes=N-`; stops after `server.die_after` bytes."""

    def do_GET(self):
        payload, start = self.server.payload, 0
        self.server.ranges.append(self.headers.get("Range"))
        if self.headers.get("Range") and self.server.honour_range:
            start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
            if start >= len(payload):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        else:
            self.send_response(200)
        body = payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.die_after is not None:
            self.wfile.write(body[: self.server.die_after])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the server dies mid-transfer
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("server")
    archive = zip_tree(
        write_class_folders(tmp_path / "src" / "PetImages", per_class=4), tmp_path / "src" / "a.zip"
    )
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ArchiveHandler)
    httpd.payload, httpd.die_after, httpd.honour_range, httpd.ranges = archive.read_bytes(), None, True, []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/files/pets.zip"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_download_publishes_the_archive_and_prepare_uses_it(server, tmp_path):
    data_dir = tmp_path / "data"
    arrays = prepare_dataset(
        DataSettings.from_config(
            dict(
                source=str(data_dir),
                resolution=16,
                cache_dir=str(data_dir / "cache"),
                download_dir=str(data_dir),
                download_url=server.url,
                progress=False,
            )
        )
    )
    assert (data_dir / "pets.zip").read_bytes() == server.payload
    assert not (data_dir / "pets.zip.part").exists()
    assert arrays.report["per_class"] == {"Cat": 4, "Dog": 4}
    assert download_archive(server.url, data_dir) == data_dir / "pets.zip"  # already there: no request
    assert len(server.ranges) == 1


def test_a_transfer_cut_short_keeps_only_the_part_file_and_resumes_from_it(server, tmp_path):
    half = len(server.payload) // 2
    server.die_after = half
    with pytest.raises(CatdogError, match=f"stopped at {half:,} of {len(server.payload):,} bytes") as info:
        download_archive(server.url, tmp_path, progress=False)
    assert "data.source" in str(info.value)
    assert not (tmp_path / "pets.zip").exists()  # never a half archive under the real name
    assert (tmp_path / "pets.zip.part").stat().st_size == half

    server.die_after = None
    assert download_archive(server.url, tmp_path, progress=False).read_bytes() == server.payload
    assert server.ranges == [None, f"bytes={half}-"]
    assert not (tmp_path / "pets.zip.part").exists()


def test_resume_when_the_server_ignores_the_range_restarts(server, tmp_path):
    (tmp_path / "pets.zip.part").write_bytes(b"garbage that is not the start of the file")
    server.honour_range = False
    assert download_archive(server.url, tmp_path, progress=False).read_bytes() == server.payload


def test_a_complete_part_file_is_validated_and_published(server, tmp_path):
    (tmp_path / "pets.zip.part").write_bytes(server.payload)  # killed between the last byte and the rename
    assert download_archive(server.url, tmp_path, progress=False).read_bytes() == server.payload
    assert server.ranges == [f"bytes={len(server.payload)}-"]


def test_an_invalid_download_is_deleted_not_published(server, tmp_path):
    server.payload = b"<html>a login page, not a zip</html>"
    with pytest.raises(CatdogError, match="not a valid zip archive"):
        download_archive(server.url, tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_offline_says_how_to_point_data_source_at_local_images(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data_dir = tmp_path / "data"
    with pytest.raises(CatdogError, match=r"Could not download .*data.source=") as info:
        prepare_dataset(
            DataSettings.from_config(
                dict(
                    source=str(data_dir),
                    cache_dir=str(data_dir / "cache"),
                    download_dir=str(data_dir),
                    download_url=f"http://127.0.0.1:{port}/kagglecatsanddogs_5340.zip",
                    progress=False,
                )
            )
        )
    assert "CATDOG_DATA" in str(info.value)
    assert list(data_dir.iterdir()) == []  # no archive, no cache
