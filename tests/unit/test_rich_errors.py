"""Rich error details (common/rich_errors.py): encoded by the server interceptor as every service
builds it, read back by grpcio-status and by Vitrine's own clients, whose retries wait as long as
the RetryInfo says; and UpsertObjects' per-object checks (search/refusals.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from vitrine.common import rich_errors
from vitrine.common.embedder_client import EmbedderClient
from vitrine.common.errors import ServiceError, invalid_argument, outage, resource_exhausted, unavailable
from vitrine.common.server import bind, make_server
from vitrine.common.settings import ServerSettings
from vitrine.search import ingest
from vitrine.search.refusals import MAX_ID_CHARS, Refusals, check_objects
from vitrine.search.server import SearchServicer
from vitrine.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc, search_pb2, search_pb2_grpc


class Failed:
    """What a client sees of a failed call: its trailing metadata."""

    def __init__(self, error: ServiceError) -> None:
        self.metadata = error.trailing_metadata()

    def trailing_metadata(self) -> Any:
        return self.metadata


def test_retryable_errors_say_why_and_when_to_retry() -> None:
    error = unavailable("the embedder is still loading", "MODELS_LOADING", 5.0)
    assert rich_errors.reason_of(Failed(error)) == "MODELS_LOADING"
    assert rich_errors.retry_delay(Failed(error)) == 5.0
    (info,) = [d for d in rich_errors.details_of(Failed(error)) if isinstance(d, error_details_pb2.ErrorInfo)]
    assert info.domain == "vitrine"
    full = resource_exhausted("queue full", "QUEUE_FULL", 0.25, {"model": "mpnet"})
    assert rich_errors.retry_delay(Failed(full)) == 0.25
    assert rich_errors.details_of(Failed(full))[0].metadata["model"] == "mpnet"  # type: ignore[attr-defined]
    down = outage("the vector store", ConnectionError("refused"))
    assert rich_errors.reason_of(Failed(down)) == "DEPENDENCY_UNAVAILABLE"
    assert rich_errors.details_of(Failed(down))[0].metadata["dependency"] == "the vector store"  # type: ignore[attr-defined]


def test_a_hostile_retry_delay_is_capped_and_plain_errors_carry_nothing() -> None:
    slow = unavailable("x", retry_s=3600)
    assert rich_errors.retry_delay(Failed(slow)) == rich_errors.MAX_HONOURED_DELAY_S
    assert invalid_argument("plain").trailing_metadata() == ()
    assert rich_errors.retry_delay(Failed(invalid_argument("plain"))) is None
    garbage = Failed(invalid_argument("x"))
    garbage.metadata = ((rich_errors.DETAILS_KEY, b"\xff\x00 not a status"),)
    assert rich_errors.details_of(garbage) == []


def test_violations_round_trip_through_a_status() -> None:
    error = invalid_argument("bad", [("objects[3].id", "id is empty"), ("objects[7].image", "not an image")])
    assert rich_errors.violations_of(Failed(error)) == [
        ("objects[3].id", "id is empty"),
        ("objects[7].image", "not an image"),
    ]
    status = rich_errors.status(grpc.StatusCode.INVALID_ARGUMENT, "m", [rich_errors.bad_request([("a", "b")])])
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert rich_errors.violations_of(status) == [("a", "b")]


def _objects(*ids: str, **image: Any) -> list[common_pb2.CollectionObject]:
    return [common_pb2.CollectionObject(id=i, title="t", image=common_pb2.Image(**image)) for i in ids]


def test_check_objects_refuses_each_wrong_object_by_index() -> None:
    objects = _objects("a", "", "b", "x" * (MAX_ID_CHARS + 1), "b", "c")
    refusals = check_objects(objects, 256)
    fields = {r.index: r.field for r in refusals.ordered()}
    # Both copies of a repeated id are refused: which one the museum meant cannot be known.
    assert fields == {1: "objects[1].id", 2: "objects[2].id", 3: "objects[3].id", 4: "objects[4].id"}
    assert "appears twice (objects[2] and objects[4])" in refusals.by_index[4].description
    assert not refusals.all_refused()
    answer = search_pb2.UpsertObjectsResponse()
    refusals.fill(answer)
    assert [(e.index, e.id) for e in answer.errors] == [(1, ""), (2, "b"), (3, "x" * (MAX_ID_CHARS + 1)), (4, "b")]
    assert rich_errors.violations_of(answer.errors[0].status) == [
        ("objects[1].id", "id is empty: every object needs its museum id")
    ]
    assert len(answer.skipped) == 4  # old clients still learn of them
    origin = check_objects(_objects("o", origin="/" * 3000), 256)
    assert origin.all_refused() and origin.ordered()[0].field == "objects[0].image.origin"


def test_refusals_found_while_embedding_name_the_field_and_keep_the_old_skipped_reasons() -> None:
    objects = [
        common_pb2.CollectionObject(id="big", title="t", image=common_pb2.Image(data=b"\0" * (3 * 2**20))),
        common_pb2.CollectionObject(id="bad", image=common_pb2.Image(data=b"x")),
        common_pb2.CollectionObject(id="empty"),
    ]
    refusals = Refusals(objects)
    refusals.image_too_large(0, 2.0)
    refusals.image_not_embedded(1, "the image is truncated", has_text=False)
    refusals.nothing_to_embed(2)
    refusals.nothing_to_embed(0)  # one refusal an object: the first one found stays
    answer = search_pb2.UpsertObjectsResponse()
    refusals.fill(answer)
    assert [rich_errors.violations_of(e.status)[0][0] for e in answer.errors] == [
        "objects[0].image.data",
        "objects[1].image",
        "objects[2]",
    ]
    assert "3.0 MiB, larger than 2 MiB" in answer.errors[0].status.message
    assert [s.reason for s in answer.skipped][1:] == [
        "no metadata text to embed, and image not embedded: the image is truncated",
        "no metadata text to embed and no image",
    ]
    assert refusals.all_refused()


def test_a_request_of_only_wrong_objects_is_invalid_with_every_violation() -> None:
    refusals = Refusals(_objects(*[""] * 8))
    for i in range(8):
        refusals.refuse(i, "id", "id is empty")
    error = refusals.error()
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "and 3 more" in error.message
    assert [f for f, _ in rich_errors.violations_of(Failed(error))] == [f"objects[{i}].id" for i in range(8)]
    with pytest.raises(ServiceError, match="objects is empty"):
        check_objects([], 256)
    with pytest.raises(ServiceError, match="at most 2"):
        check_objects(_objects("a", "b", "c"), 2)


# -- on a real server -----------------------------------------------------------------------------


class Overloaded:
    """Stands in for SearchService: refuses the first `busy` upserts as a full service would."""

    def __init__(self, busy: int, retry_s: float) -> None:
        self.busy = busy
        self.retry_s = retry_s
        self.calls: list[float] = []

    async def upsert(self, objects: list[common_pb2.CollectionObject]) -> search_pb2.UpsertObjectsResponse:
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.busy:
            raise resource_exhausted("too busy", "QUEUE_FULL", self.retry_s)
        if all(not o.id for o in objects):
            raise invalid_argument("all wrong", [(f"objects[{i}].id", "id is empty") for i in range(len(objects))])
        return search_pb2.UpsertObjectsResponse(upserted=len(objects))


@pytest.fixture
async def overloaded() -> AsyncIterator[tuple[str, Overloaded]]:
    service = Overloaded(busy=1, retry_s=0.6)
    settings = ServerSettings(port=0, metrics_port=0)
    server = make_server(settings)
    search_pb2_grpc.add_SearchServiceServicer_to_server(SearchServicer(service), server)  # type: ignore[arg-type]
    port = bind(server, settings)
    await server.start()
    yield f"127.0.0.1:{port}", service
    await server.stop(None)


async def test_details_reach_the_client_and_grpcio_status_reads_them(overloaded: tuple[str, Overloaded]) -> None:
    address, _ = overloaded
    async with grpc.aio.insecure_channel(address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.UpsertObjects(search_pb2.UpsertObjectsRequest(objects=_objects("a")), timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rich_errors.reason_of(info.value) == "QUEUE_FULL"
    assert rich_errors.retry_delay(info.value) == pytest.approx(0.6)
    # The standard reader (what other languages' helpers mirror) agrees with ours.
    status = rpc_status.from_call(info.value)
    assert status is not None and status.message == "too busy" and len(status.details) == 2


async def test_ingest_waits_as_long_as_retry_info_asks(overloaded: tuple[str, Overloaded]) -> None:
    address, service = overloaded
    async with grpc.aio.insecure_channel(address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        answer = await ingest._upsert(stub, _objects("a"), 10, "")
    assert answer.upserted == 1
    # Its own first back-off would be 1 s; the service asked for 0.6 s.
    waited = service.calls[1] - service.calls[0]
    assert 0.55 <= waited < 0.95


async def test_ingest_reports_each_object_of_an_all_refused_batch(overloaded: tuple[str, Overloaded]) -> None:
    address, service = overloaded
    service.busy = 0
    loaded = [ingest.Loaded("f:0", common_pb2.CollectionObject(id="", title="t"))]
    summary = await ingest.ingest(loaded, address, progress=False)
    assert summary.skipped == {"id is empty": 1}
    assert summary.examples["id is empty"] == ["f:0 (): id is empty"]


class BusyEmbedder(embedder_pb2_grpc.EmbedderServiceServicer):
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def EmbedTexts(self, request: embedder_pb2.EmbedTextsRequest, context: grpc.aio.ServicerContext):
        self.calls.append(time.monotonic())
        if len(self.calls) == 1:
            raise resource_exhausted("queue full", "QUEUE_FULL", 0.7)
        return embedder_pb2.EmbedTextsResponse(
            vectors=[common_pb2.Vector(values=[1.0, 0.0], model=request.model, dimension=2) for _ in request.texts]
        )


async def test_the_embedder_client_waits_as_long_as_retry_info_asks() -> None:
    settings = ServerSettings(port=0, metrics_port=0)
    server = make_server(settings)
    busy = BusyEmbedder()
    embedder_pb2_grpc.add_EmbedderServiceServicer_to_server(busy, server)
    port = bind(server, settings)
    await server.start()
    client = EmbedderClient(f"127.0.0.1:{port}", timeout_s=10)
    try:
        rows = await client.embed_texts("mpnet", ["a ship"])
    finally:
        await client.close()
        await server.stop(None)
    assert rows.shape == (1, 2)
    waited = busy.calls[1] - busy.calls[0]
    assert 0.65 <= waited < 1.2  # not its own 0.2 s guess


class SlowEmbedder(embedder_pb2_grpc.EmbedderServiceServicer):
    async def EmbedTexts(self, request: embedder_pb2.EmbedTextsRequest, context: grpc.aio.ServicerContext):
        await asyncio.sleep(5)
        return embedder_pb2.EmbedTextsResponse()


async def test_the_embedder_client_tells_busy_from_down() -> None:
    settings = ServerSettings(port=0, metrics_port=0)
    server = make_server(settings)
    embedder_pb2_grpc.add_EmbedderServiceServicer_to_server(SlowEmbedder(), server)
    port = bind(server, settings)
    await server.start()
    client = EmbedderClient(f"127.0.0.1:{port}", timeout_s=0.3, retries=0)
    try:
        with pytest.raises(ServiceError) as slow:
            await client.embed_texts("mpnet", ["a ship"])
    finally:
        await server.stop(None)
    assert slow.value.code == grpc.StatusCode.UNAVAILABLE and "is busy: no answer within 0.3 s" in slow.value.message
    assert rich_errors.reason_of(Failed(slow.value)) == "EMBEDDER_BUSY"
    try:
        with pytest.raises(ServiceError) as down:
            await client.embed_texts("mpnet", ["a ship"])  # the server is gone now
    finally:
        await client.close()
    assert rich_errors.reason_of(Failed(down.value)) == "EMBEDDER_UNAVAILABLE"
