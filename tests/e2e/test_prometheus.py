"""A real Prometheus server scrapes the three services' /metrics; a query returns the
embedder's request counter."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import grpc

from tests.e2e.conftest import System
from tests.servers import free_port
from vitrine.v1 import embedder_pb2, embedder_pb2_grpc

PROMETHEUS = shutil.which("prometheus")


def query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_all_three_services(system: System, tmp_path: Path) -> None:
    with grpc.insecure_channel(system.embedder.address) as channel:
        embedder_pb2_grpc.EmbedderServiceStub(channel).EmbedTexts(
            embedder_pb2.EmbedTextsRequest(model="mpnet", texts=["a lighthouse at dusk"]), timeout=60
        )
    targets = [s.metrics_url.removeprefix("http://").removesuffix("/metrics") for s in system.services]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: vitrine\n    static_configs:\n"
        f"      - targets: {json.dumps(targets)}\n"
    )
    assert PROMETHEUS, "no prometheus binary: `make tools` installs it (Debian package prometheus)"
    port = free_port()
    prometheus = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    try:
        deadline = time.monotonic() + 90
        up, requests = [], []
        while time.monotonic() < deadline:
            time.sleep(1)
            try:
                up = query(port, 'up{job="vitrine"} == 1')
                requests = query(
                    port,
                    'vitrine_grpc_requests_total{grpc_service="vitrine.v1.EmbedderService",'
                    'grpc_method="EmbedTexts",grpc_code="OK"}',
                )
            except OSError:
                continue
            if len(up) == 3 and requests:
                break
        assert len(up) == 3, f"targets up: {up}\n{(tmp_path / 'prometheus.log').read_text()[-2000:]}"
        assert requests and float(requests[0]["value"][1]) >= 1
        ready = query(port, "vitrine_ready")
        assert {r["metric"]["service"] for r in ready} == {"embedder", "tagger", "search"}
    finally:
        prometheus.terminate()
        prometheus.wait(30)
