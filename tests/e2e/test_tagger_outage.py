"""The embedder goes down under a running tagger: suggestions answer UNAVAILABLE with retry advice
(not INTERNAL, not a hang), and come back by themselves once the embedder is back."""

from __future__ import annotations

import grpc
import pytest

from tests.e2e.conftest import System
from tests.servers import LOG_DIR, ROOT
from vitrine.launcher import start_service as launch
from vitrine.v1 import common_pb2, tagger_pb2, tagger_pb2_grpc


def test_tagger_is_unavailable_while_its_embedder_is_down_and_recovers_by_itself(system: System) -> None:
    stub = tagger_pb2_grpc.TaggerServiceStub(grpc.insecure_channel(system.tagger.address))
    obj = common_pb2.CollectionObject(id="outage-1", title="A stormy sea with a shipwreck off a rocky coast")
    request = tagger_pb2.SuggestTagsRequest(object=obj, k=4)
    assert stub.SuggestTags(request, timeout=60).suggestions

    embedder = system.embedder
    assert embedder.stop() == 0
    try:
        for title in ("Fishing boats in a calm harbour at dawn", "Portrait of a bishop in red robes"):
            other = tagger_pb2.SuggestTagsRequest(object=common_pb2.CollectionObject(id="outage-2", title=title), k=4)
            with pytest.raises(grpc.RpcError) as refused:
                stub.SuggestTags(other, timeout=60)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
            assert "embedder" in refused.value.details() and "retry" in refused.value.details()
        assert system.tagger.process.poll() is None
    finally:
        # The same embedder again, on the same ports, for the tests that follow.
        system.embedder = launch(
            "embedder", LOG_DIR, embedder.env, port=embedder.port, metrics_port=embedder.metrics_port, cwd=ROOT
        )
        system.embedder.wait_serving(300)
    # No restart of the tagger: its next call reaches the embedder again.
    again = tagger_pb2.SuggestTagsRequest(
        object=common_pb2.CollectionObject(id="outage-3", title="Fishing boats in a calm harbour at dawn"), k=4
    )
    assert stub.SuggestTags(again, timeout=60).suggestions
