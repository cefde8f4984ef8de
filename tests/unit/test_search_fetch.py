"""Ingest fetches images by URL (http(s), IIIF) with limits, timeouts and retries, from a local
HTTP server that misbehaves on purpose."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from vitrine.common.fetch import FetchError, FetchSettings, fetch_image_bytes, iiif_image_url
from vitrine.common.records import load_records

PAINTING = sorted((FIXTURES / "paintings").glob("*.jpg"))[0].read_bytes()
FAST = FetchSettings(timeout_s=1.0, retries=2, backoff_s=0.01, max_bytes=1_000_000)


class Handler(http.server.BaseHTTPRequestHandler):
    calls: dict[str, int] = {}

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def send(self, code: int, body: bytes, content_type: str = "image/jpeg") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        count = Handler.calls[self.path] = Handler.calls.get(self.path, 0) + 1
        if self.path == "/painting.jpg":
            self.send(200, PAINTING)
        elif self.path == "/flaky.jpg":  # fails twice, then works
            self.send(503, b"busy") if count <= 2 else self.send(200, PAINTING)
        elif self.path == "/always-503.jpg":
            self.send(503, b"busy")
        elif self.path == "/slow.jpg":
            time.sleep(2)
            self.send(200, PAINTING)
        elif self.path == "/huge.jpg":
            self.send(200, b"\xff\xd8\xff" + b"0" * 2_000_000)
        elif self.path == "/page.html":
            self.send(200, b"<html>not an image</html>", "text/html")
        elif self.path == "/iiif/img1/full/!1024,1024/0/default.jpg":
            self.send(200, PAINTING)
        else:
            self.send(404, b"no such file", "text/plain")


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that time out on purpose break the pipe; that is the point of the test


@pytest.fixture(autouse=True)
def no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_fetches_an_image(server: str) -> None:
    assert fetch_image_bytes(f"{server}/painting.jpg", FAST) == PAINTING


def test_retries_transient_failures(server: str) -> None:
    assert fetch_image_bytes(f"{server}/flaky.jpg", FAST) == PAINTING
    assert Handler.calls["/flaky.jpg"] == 3
    with pytest.raises(FetchError, match=r"HTTP 503 \(after 3 attempts\)"):
        fetch_image_bytes(f"{server}/always-503.jpg", FAST)


def test_404_is_final(server: str) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_image_bytes(f"{server}/missing.jpg", FAST)
    assert Handler.calls["/missing.jpg"] == 1


def test_timeout_and_size_limit(server: str) -> None:
    start = time.monotonic()
    with pytest.raises(FetchError, match="after 1 attempts"):
        fetch_image_bytes(f"{server}/slow.jpg", FetchSettings(timeout_s=0.3, retries=0))
    assert time.monotonic() - start < 1.5
    with pytest.raises(FetchError, match="more than the 1000000"):
        fetch_image_bytes(f"{server}/huge.jpg", FAST)


def test_iiif_info_json_becomes_a_bounded_image_request(server: str) -> None:
    assert iiif_image_url("https://iiif.example.org/img1/info.json") == (
        "https://iiif.example.org/img1/full/!1024,1024/0/default.jpg"
    )
    assert iiif_image_url("https://example.org/a.jpg") == "https://example.org/a.jpg"
    assert fetch_image_bytes(f"{server}/iiif/img1/info.json", FAST) == PAINTING


def test_ingest_records_with_urls(server: str, tmp_path: Path) -> None:
    records = [
        {"id": "U1", "title": "From a URL", "image_url": f"{server}/painting.jpg"},
        {"id": "U2", "title": "From IIIF", "image_url": f"{server}/iiif/img1/info.json"},
        {"id": "U3", "title": "Broken link", "image_url": f"{server}/missing.jpg"},
        {"id": "U4", "title": "Not an image", "image_url": f"{server}/page.html"},
    ]
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    loaded = {item.object.id: item for item in load_records(path)}
    assert loaded["U1"].object.image.data == PAINTING and not loaded["U1"].image_problem
    assert loaded["U2"].object.image.data == PAINTING
    # A bad image never drops the object: it is kept without its image, and the reason is told.
    assert "HTTP 404" in loaded["U3"].image_problem and not loaded["U3"].object.HasField("image")
    assert "not an image" in loaded["U4"].image_problem
    assert loaded["U1"].object.extra["image_source"] == f"{server}/painting.jpg"
