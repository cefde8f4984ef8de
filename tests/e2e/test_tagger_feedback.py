"""Curators' feedback through gRPC on the running tagger: stored once per feedback id, applied to
the next suggestions for that object without retraining, counted for the dashboard, and bad
items refused with what to fix (a bad item in a stream stores nothing)."""

from __future__ import annotations

import urllib.request
import uuid

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import System
from vitrine.v1 import common_pb2, tagger_pb2, tagger_pb2_grpc

ACCEPT, REJECT, ADD = (
    tagger_pb2.FEEDBACK_ACTION_ACCEPT,
    tagger_pb2.FEEDBACK_ACTION_REJECT,
    tagger_pb2.FEEDBACK_ACTION_ADD,
)


@pytest.fixture()
def stub(system: System) -> tagger_pb2_grpc.TaggerServiceStub:
    return tagger_pb2_grpc.TaggerServiceStub(grpc.insecure_channel(system.tagger.address))


def feedback(object_id: str, tag: str, action: int, feedback_id: str = "") -> tagger_pb2.SubmitFeedbackRequest:
    return tagger_pb2.SubmitFeedbackRequest(
        feedback_id=feedback_id or uuid.uuid4().hex, object_id=object_id, tag=tag, action=action, curator_id="c-1"
    )


def suggest(stub: tagger_pb2_grpc.TaggerServiceStub, object_id: str) -> list[tagger_pb2.TagSuggestion]:
    ship = common_pb2.CollectionObject(id=object_id, title="A sailing ship at sea in a storm", medium="Oil paint")
    request = tagger_pb2.SuggestTagsRequest(object=ship, k=5, threshold=0.0001)
    return list(stub.SuggestTags(request, timeout=60).suggestions)


def feedback_counts(system: System) -> dict[str, float]:
    with urllib.request.urlopen(system.tagger.metrics_url, timeout=30) as response:
        text = response.read().decode()
    return {
        s.labels["decision"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "vitrine_tagger_feedback_total"
    }


def test_rejected_tag_is_not_suggested_again_for_that_object(
    system: System, stub: tagger_pb2_grpc.TaggerServiceStub
) -> None:
    object_id = f"ship-{uuid.uuid4().hex[:8]}"
    before = suggest(stub, object_id)
    rejected, accepted = before[0].tag.id, before[1].tag.id
    assert not before[1].already_present
    counts = feedback_counts(system)
    stub.SubmitFeedback(feedback(object_id, rejected, REJECT), timeout=30)
    stub.SubmitFeedback(feedback(object_id, accepted, ACCEPT), timeout=30)
    after = suggest(stub, object_id)
    assert rejected not in [s.tag.id for s in after] and len(after) == 5
    assert next(s for s in after if s.tag.id == accepted).already_present
    # Another object with the same text is not affected.
    assert suggest(stub, object_id + "-other")[0].tag.id == rejected
    now = feedback_counts(system)
    assert now["rejected"] == counts["rejected"] + 1 and now["accepted"] == counts["accepted"] + 1


def test_resubmitting_a_feedback_id_changes_nothing(system: System, stub: tagger_pb2_grpc.TaggerServiceStub) -> None:
    item = feedback("T-replay", "sea", ADD)
    assert stub.SubmitFeedback(item, timeout=30).created
    counts = feedback_counts(system)
    answer = stub.SubmitFeedback(item, timeout=30)
    assert answer.feedback_id == item.feedback_id and not answer.created
    assert feedback_counts(system) == counts
    changed = tagger_pb2.SubmitFeedbackRequest()
    changed.CopyFrom(item)
    changed.action = REJECT
    with pytest.raises(grpc.RpcError) as refused:
        stub.SubmitFeedback(changed, timeout=30)
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "use a new id" in refused.value.details()


def test_stream_is_all_or_nothing(stub: tagger_pb2_grpc.TaggerServiceStub) -> None:
    good = [feedback("T-bulk", tag, ADD) for tag in ("sea", "boat")]
    bad = feedback("T-bulk", "no such tag", ADD)
    with pytest.raises(grpc.RpcError) as refused:
        stub.StreamSubmitFeedback(iter([tagger_pb2.StreamSubmitFeedbackRequest(feedback=f) for f in [*good, bad]]))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "feedback #2: tag 'no such tag' is not in the tagger's vocabulary" in refused.value.details()
    items = [*good, good[0]]  # nothing was stored above; the replayed id counts as a duplicate
    summary = stub.StreamSubmitFeedback(iter([tagger_pb2.StreamSubmitFeedbackRequest(feedback=f) for f in items]))
    assert (summary.received, summary.created, summary.duplicates) == (3, 2, 1)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"feedback_id": ""}, "feedback_id is empty"),
        ({"curator_id": ""}, "curator_id is empty"),
        ({"tag": "Sea"}, "not in the tagger's vocabulary"),
        ({"action": tagger_pb2.FEEDBACK_ACTION_UNSPECIFIED}, "give ACCEPT, REJECT or ADD"),
    ],
)
def test_bad_feedback(stub: tagger_pb2_grpc.TaggerServiceStub, change: dict, fragment: str) -> None:
    item = feedback("T1", "sea", REJECT)
    for name, value in change.items():
        setattr(item, name, value)
    with pytest.raises(grpc.RpcError) as refused:
        stub.SubmitFeedback(item, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in refused.value.details()
