"""TLS on a server built as every service builds it (common/server.make_server and bind), with a
certificate that openssl makes for the test (the write-token tests, which need no child process,
are tests/unit/test_security.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from tests.unit.test_security import RecordingService, _serve
from vitrine.common.settings import ServerSettings
from vitrine.search.ingest import open_channel
from vitrine.v1 import search_pb2, search_pb2_grpc


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a test certificate")
async def test_tls_serves_clients_that_trust_its_ca_and_refuses_plaintext(tmp_path: Path) -> None:
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    service = RecordingService()
    settings = ServerSettings(port=0, metrics_port=0, tls_cert_file=str(cert), tls_key_file=str(key))
    server, address = await _serve(settings, service)
    try:
        async with open_channel(address, tls_ca_file=str(cert)) as channel:
            info = await search_pb2_grpc.SearchServiceStub(channel).GetCollectionInfo(
                search_pb2.GetCollectionInfoRequest(), timeout=10
            )
            assert info.objects == 0
        async with grpc.aio.insecure_channel(address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await search_pb2_grpc.SearchServiceStub(channel).GetCollectionInfo(
                    search_pb2.GetCollectionInfoRequest(), timeout=3
                )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(None)
