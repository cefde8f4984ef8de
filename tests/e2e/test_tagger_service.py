"""The tagger's RPCs through gRPC on the running system: batch streaming keeps order, bad input
gets a status that says what to fix."""

from __future__ import annotations

import grpc
import pytest

from tests.e2e.conftest import System
from vitrine.v1 import common_pb2, tagger_pb2, tagger_pb2_grpc


@pytest.fixture()
def stub(system: System) -> tagger_pb2_grpc.TaggerServiceStub:
    return tagger_pb2_grpc.TaggerServiceStub(grpc.insecure_channel(system.tagger.address))


def _request(object_id: str, title: str, **fields: str) -> tagger_pb2.SuggestTagsRequest:
    return tagger_pb2.SuggestTagsRequest(object=common_pb2.CollectionObject(id=object_id, title=title, **fields), k=4)


def test_stream_answers_in_order(stub: tagger_pb2_grpc.TaggerServiceStub) -> None:
    titles = ["Portrait of a Young Woman", "Stormy Sea with a Shipwreck", "View of a Cathedral", "Dog"] * 10
    requests = [tagger_pb2.StreamSuggestTagsRequest(request=_request(f"x{i}", t)) for i, t in enumerate(titles)]
    answers = list(stub.StreamSuggestTags(iter(requests), timeout=120))
    assert [a.response.object_id for a in answers] == [f"x{i}" for i in range(len(titles))]
    single = stub.SuggestTags(_request("x1", titles[1]), timeout=60)
    assert [s.tag.id for s in answers[1].response.suggestions] == [s.tag.id for s in single.suggestions]


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        (tagger_pb2.SuggestTagsRequest(object=common_pb2.CollectionObject(id="x")), "no usable text"),
        (tagger_pb2.SuggestTagsRequest(object=common_pb2.CollectionObject(title="No id")), "object.id is empty"),
        (tagger_pb2.SuggestTagsRequest(object=common_pb2.CollectionObject(id="x", title="Sea"), k=1000), "k"),
        (
            tagger_pb2.SuggestTagsRequest(object=common_pb2.CollectionObject(id="x", title="Sea"), threshold=2),
            "threshold",
        ),
        (
            tagger_pb2.SuggestTagsRequest(object=common_pb2.CollectionObject(id="x", title="Sea"), vocabulary="lcsh"),
            "unknown vocabulary",
        ),
        (tagger_pb2.SuggestTagsRequest(object=common_pb2.CollectionObject(id="x", title="S" * 30_000)), "characters"),
    ],
)
def test_bad_requests(
    stub: tagger_pb2_grpc.TaggerServiceStub, request_: tagger_pb2.SuggestTagsRequest, fragment: str
) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        stub.SuggestTags(request_, timeout=30)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in failure.value.details()
