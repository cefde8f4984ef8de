"""Faults (issue #8): an ingest killed midway and re-run, the search service killed under an
ingest, and a service past its concurrency limit. Real services, real processes, SIGKILL."""

from __future__ import annotations

import concurrent.futures
import gzip
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.servers import ROOT, ServiceProcess, running_service, start_service
from vitrine.v1 import embedder_pb2, embedder_pb2_grpc, search_pb2, search_pb2_grpc

TATE_DEV = ROOT.parent / "shared" / "data" / "tate" / "tate_dev.jsonl.gz"
RECORDS = 600


@pytest.fixture(scope="module")
def embedder() -> Iterator[ServiceProcess]:
    with running_service("embedder", {"VITRINE_EMBEDDER_MODELS": "minilm"}) as service:
        yield service


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    with gzip.open(TATE_DEV, "rt") as handle:
        rows = [json.loads(line) for line in itertools.islice(handle, RECORDS)]
    path = tmp_path_factory.mktemp("records") / "tate.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, [r["id"] for r in rows]


def _ingest(search: ServiceProcess, path: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "vitrine.search.cli", "--address", search.address, "ingest", str(path)]
    return subprocess.Popen(
        [*command, "--batch-size", "16", "--quiet"], cwd=ROOT, env=os.environ, stdout=subprocess.PIPE, text=True
    )


def _count(search: ServiceProcess) -> int:
    with grpc.insecure_channel(search.address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        return stub.GetCollectionInfo(search_pb2.GetCollectionInfoRequest(), timeout=30).objects


def _kill_when_stored(
    process: subprocess.Popen[str], victim: ServiceProcess | None, search: ServiceProcess, at_least: int
) -> int:
    """SIGKILL `victim` (the ingest itself when None) once `at_least` objects are stored."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        stored = _count(search)
        if stored >= at_least:
            break
        assert process.poll() is None, "the ingest ended before it could be killed"
        time.sleep(0.05)
    if victim is None:
        process.kill()
    else:
        victim.process.kill()
    process.wait(120)
    return stored


def _all_present_once(search: ServiceProcess, ids: list[str]) -> None:
    assert _count(search) == len(ids)  # each object is one point (its id maps to one UUID)
    with grpc.insecure_channel(search.address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        for museum_id in ids:
            assert stub.GetObject(search_pb2.GetObjectRequest(id=museum_id), timeout=10).object.id == museum_id


def test_an_ingest_killed_midway_then_run_again_stores_every_object_once(
    embedder: ServiceProcess, records: tuple[Path, list[str]], tmp_path: Path
) -> None:
    path, ids = records
    env = {
        "VITRINE_SEARCH_EMBEDDER_ADDRESS": embedder.address,
        "VITRINE_SEARCH_TEXT_MODEL": "minilm",
        "VITRINE_SEARCH_DATA_DIR": str(tmp_path / "search-data"),
    }
    search = start_service("search", env)
    try:
        search.wait_serving(180)
        # 1. The ingest process dies (kill -9) midway.
        stored = _kill_when_stored(_ingest(search, path), None, search, 32)
        assert 0 < stored < len(ids)
        # 2. The search service itself dies (kill -9) under the next run; its store keeps every
        # write it acknowledged (write-ahead log), so a restart opens the collection as it was.
        rerun = _ingest(search, path)
        _kill_when_stored(rerun, search, search, _count(search) + 32)
        assert rerun.returncode != 0
        search.stop()
        search = start_service("search", env)
        search.wait_serving(180)
        partial = _count(search)
        assert stored <= partial < len(ids)
        # 3. A complete run: what was stored is skipped as unchanged, the rest loaded.
        final = _ingest(search, path)
        out, _ = final.communicate(timeout=600)
        assert final.returncode == 0, out
        assert f"{len(ids)} records" in out and f"{partial} unchanged" in out, out
        _all_present_once(search, ids)
        # Once more: nothing loaded twice.
        again = _ingest(search, path)
        out, _ = again.communicate(timeout=600)
        assert f"0 upserted, {len(ids)} unchanged" in out, out
        assert _count(search) == len(ids)
    finally:
        search.stop()


def test_calls_past_the_concurrency_limit_are_refused_with_resource_exhausted() -> None:
    # Overload is refused at once, not queued without bound: 2 calls at a time here.
    env = {"VITRINE_EMBEDDER_MODELS": "minilm", "VITRINE_EMBEDDER_MAX_CONCURRENT_RPCS": "2"}
    with running_service("embedder", env) as service:
        texts = [f"a long catalogue description of artwork number {i}, " * 8 for i in range(64)]

        def call(_: int) -> grpc.StatusCode:
            with grpc.insecure_channel(service.address) as channel:
                stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
                try:
                    stub.EmbedTexts(embedder_pb2.EmbedTextsRequest(model="minilm", texts=texts), timeout=120)
                    return grpc.StatusCode.OK
                except grpc.RpcError as exc:
                    assert exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or "limit" in (exc.details() or "")
                    return exc.code()

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(call, range(12)))
        assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
        assert codes.count(grpc.StatusCode.OK) >= 2
        # The service is still there and answers once the burst is over.
        assert call(0) == grpc.StatusCode.OK
        assert service.process.poll() is None
