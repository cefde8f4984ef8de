"""Machine tags on the running system: the search service asked the tagger for every object it
ingested, stored the tags with their scores and version, and finds objects by them."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from tests.e2e.conftest import DEMO_OBJECT, System
from vitrine.v1 import search_pb2, search_pb2_grpc, tagger_pb2, tagger_pb2_grpc


@pytest.fixture()
def search(system: System) -> search_pb2_grpc.SearchServiceStub:
    return search_pb2_grpc.SearchServiceStub(grpc.insecure_channel(system.search.address))


def test_ingested_objects_carry_the_taggers_machine_tags(
    system: System, search: search_pb2_grpc.SearchServiceStub
) -> None:
    stored = search.GetObject(search_pb2.GetObjectRequest(id=DEMO_OBJECT), timeout=30)
    assert stored.machine_tags_version == "e2e-v1"
    scores = [t.score for t in stored.machine_tags]
    # Scores travel as float32 (and are stored rounded to 4 places): a score of exactly the 0.02
    # threshold reads back as 0.0199999995.
    assert scores and scores == sorted(scores, reverse=True) and min(scores) >= float(np.float32(0.02))
    # The same tags the tagger gives the stored object now.
    tagger = tagger_pb2_grpc.TaggerServiceStub(grpc.insecure_channel(system.tagger.address))
    answer = tagger.SuggestTags(tagger_pb2.SuggestTagsRequest(object=stored.object, k=30, threshold=0.02), timeout=60)
    assert [t.label for t in stored.machine_tags] == [s.tag.label for s in answer.suggestions]


def test_search_finds_objects_by_their_machine_tags(search: search_pb2_grpc.SearchServiceStub) -> None:
    stored = search.GetObject(search_pb2.GetObjectRequest(id=DEMO_OBJECT), timeout=30)
    label = stored.machine_tags[0].label
    answer = search.Search(
        search_pb2.SearchRequest(query=label, signal_weights={"text": 0, "keyword": 0, "image": 0}), timeout=30
    )
    hits = {h.object.id: h for h in answer.hits}
    assert DEMO_OBJECT in hits
    assert {s.signal for s in hits[DEMO_OBJECT].signals} == {search_pb2.SIGNAL_TAGS}
    fused = search.Search(search_pb2.SearchRequest(query=label), timeout=30)
    assert any(s.signal == search_pb2.SIGNAL_TAGS for h in fused.hits for s in h.signals)
