"""Optional access control (common/security.py) on a server built as every service builds it
(common/server.make_server and bind): the write token on write RPCs, reads open, and TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from vitrine.common.security import bearer, method_paths
from vitrine.common.server import bind, make_server
from vitrine.common.settings import ServerSettings
from vitrine.search.server import WRITE_METHODS, SearchServicer
from vitrine.v1 import common_pb2, search_pb2, search_pb2_grpc

TOKEN = "s3cret-token"
SERVICE = search_pb2.DESCRIPTOR.services_by_name["SearchService"]


class RecordingService:
    """Stands in for SearchService: records the writes that got through."""

    def __init__(self) -> None:
        self.upserted: list[str] = []

    async def upsert(self, objects: list[common_pb2.CollectionObject]) -> search_pb2.UpsertObjectsResponse:
        self.upserted += [o.id for o in objects]
        return search_pb2.UpsertObjectsResponse(upserted=len(objects))

    async def delete(self, ids: list[str]) -> int:
        return 0

    async def collection_info(self) -> search_pb2.GetCollectionInfoResponse:
        return search_pb2.GetCollectionInfoResponse(objects=len(self.upserted))


async def _serve(settings: ServerSettings, service: RecordingService) -> tuple[grpc.aio.Server, str]:
    server = make_server(settings, method_paths(SERVICE, WRITE_METHODS))
    search_pb2_grpc.add_SearchServiceServicer_to_server(SearchServicer(service), server)  # type: ignore[arg-type]
    port = bind(server, settings)
    await server.start()
    return server, f"localhost:{port}"


@pytest.fixture
async def guarded() -> AsyncIterator[tuple[str, RecordingService]]:
    service = RecordingService()
    server, address = await _serve(ServerSettings(port=0, metrics_port=0, auth_token=TOKEN), service)
    yield address, service
    await server.stop(None)


UPSERT = search_pb2.UpsertObjectsRequest(objects=[common_pb2.CollectionObject(id="T1", title="A harbour")])


async def test_write_rpcs_need_the_token_and_reads_do_not(guarded: tuple[str, RecordingService]) -> None:
    address, service = guarded
    async with grpc.aio.insecure_channel(address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        for metadata in [(), bearer("wrong"), (("authorization", TOKEN),)]:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.UpsertObjects(UPSERT, metadata=metadata, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "authorization: Bearer" in refused.value.details()
            assert TOKEN not in refused.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.DeleteObjects(search_pb2.DeleteObjectsRequest(ids=["T1"]), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert service.upserted == []  # nothing got through

        answer = await stub.UpsertObjects(UPSERT, metadata=bearer(TOKEN), timeout=10)
        assert answer.upserted == 1 and service.upserted == ["T1"]
        # Reads need no token.
        info = await stub.GetCollectionInfo(search_pb2.GetCollectionInfoRequest(), timeout=10)
        assert info.objects == 1


async def test_without_a_token_setting_writes_are_open() -> None:
    service = RecordingService()
    server, address = await _serve(ServerSettings(port=0, metrics_port=0), service)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            await search_pb2_grpc.SearchServiceStub(channel).UpsertObjects(UPSERT, timeout=10)
        assert service.upserted == ["T1"]
    finally:
        await server.stop(None)


async def test_tls_needs_both_files() -> None:
    # A grpc.aio server belongs to an event loop: made inside one, whatever earlier tests did to
    # the main thread's default loop.
    server = make_server(ServerSettings())
    with pytest.raises(SystemExit, match="both a certificate and a key"):
        bind(server, ServerSettings(port=0, tls_cert_file="/nowhere.pem"))
