"""The tagger's RPCs through gRPC on the running system: batch streaming keeps order, images are
read when present, bad input gets a status that says what to fix."""

from __future__ import annotations

import subprocess
from collections import Counter

import grpc
import pytest

from tests.e2e.conftest import System
from tests.servers import ROOT
from tests.tagger_data import tagger_cli
from vitrine.common.vocabulary import Vocabulary
from vitrine.tagger.data import load_documents
from vitrine.tagger.safety import DEFAULT_RULES, SafetyRules
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


def test_suggestions_without_explanations_are_the_same_tags(stub: tagger_pb2_grpc.TaggerServiceStub) -> None:
    full = _request("x1", "Stormy Sea with a Shipwreck")
    bare = tagger_pb2.SuggestTagsRequest()
    bare.CopyFrom(full)
    bare.omit_explanations = True
    explained = stub.SuggestTags(full, timeout=60).suggestions
    plain = stub.SuggestTags(bare, timeout=60).suggestions
    assert explained and all(s.explanation.summary for s in explained)
    assert [(s.tag.id, s.kind) for s in plain] == [(s.tag.id, s.kind) for s in explained]
    assert [s.score for s in plain] == pytest.approx([s.score for s in explained])
    assert not any(s.HasField("explanation") for s in plain)


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
        (
            tagger_pb2.SuggestTagsRequest(
                object=common_pb2.CollectionObject(id="x", title="Sea", image=common_pb2.Image(data=b"not an image"))
            ),
            "not a recognised image",
        ),
    ],
)
def test_bad_requests(
    stub: tagger_pb2_grpc.TaggerServiceStub, request_: tagger_pb2.SuggestTagsRequest, fragment: str
) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        stub.SuggestTags(request_, timeout=30)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in failure.value.details()


def test_version_reads_images(system: System, stub: tagger_pb2_grpc.TaggerServiceStub) -> None:
    info = stub.GetTaggerInfo(tagger_pb2.GetTaggerInfoRequest(), timeout=30)
    assert {"image_knn", "semantic_image"} <= set(info.components)


def test_image_only_object_gets_the_tags_its_image_carries(
    system: System, stub: tagger_pb2_grpc.TaggerServiceStub
) -> None:
    """An object with nothing but an image: only the image models have evidence. Its image is
    the painting the training slice gave to objects carrying `tag`, so image kNN finds those
    objects, and the explanation names them."""
    carriers = {d.id: d for d in load_documents(system.tagger_data.train)}
    for tag, painting in list(system.tag_paintings.items())[:3]:
        image = common_pb2.Image(data=painting.read_bytes())
        request = tagger_pb2.SuggestTagsRequest(
            object=common_pb2.CollectionObject(id=f"only-image-{painting.stem}", image=image), k=5, threshold=0.0001
        )
        answer = stub.SuggestTags(request, timeout=60)
        ids = [s.tag.id for s in answer.suggestions]
        assert tag in ids[:3], (tag, ids)
        found = answer.suggestions[ids.index(tag)]
        evidence = {c.component: c for c in found.explanation.components}
        assert evidence["image_knn"].score > 0.5 and evidence["image_knn"].rank >= 1
        assert evidence["knn"].score == 0 and evidence["omikuji"].score == 0  # no text, no text evidence
        assert found.explanation.similar_objects
        for similar in found.explanation.similar_objects:
            assert tag in carriers[similar.id].subjects
            assert similar.similarity == pytest.approx(1.0, abs=1e-3)  # the very same painting


def test_sensitive_suggestions_on_real_records_are_flagged_for_review(
    system: System, stub: tagger_pb2_grpc.TaggerServiceStub
) -> None:
    """Real Tate records whose curators gave them an identity, health or sexuality tag: the model
    suggests such tags back, and every one comes flagged with the rule's reason."""
    rules = SafetyRules.load(DEFAULT_RULES, Vocabulary.load(system.tagger_data.vocabulary))
    sensitive = [d for d in load_documents(system.tagger_data.train) if any(s in rules.by_tag for s in d.subjects)]
    assert sensitive, "the slice should hold records with sensitive tags"
    flagged = 0
    for doc in sensitive[:10]:
        answer = stub.SuggestTags(tagger_pb2.SuggestTagsRequest(object=doc.obj, k=20, threshold=0.0001), timeout=60)
        for suggestion in answer.suggestions:
            reason = rules.review_reason(doc.obj, suggestion.tag.id)
            assert suggestion.review_required == bool(reason) and suggestion.review_reason == reason
            flagged += suggestion.review_required
    assert flagged >= 3


def test_audit_serves_the_latest_report(system: System, stub: tagger_pb2_grpc.TaggerServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as missing:
        stub.Audit(tagger_pb2.AuditRequest(), timeout=30)
    assert missing.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "vitrine-tagger audit" in missing.value.details()
    out = system.tagger_models.parent / "tagger-audit"
    command = tagger_cli("audit", system.tagger_data, "--data", str(system.tagger_data.train), "--out", str(out))
    subprocess.run(command, check=True, cwd=ROOT, capture_output=True, text=True)
    answer = stub.Audit(tagger_pb2.AuditRequest(limit_per_kind=2), timeout=30)
    shown = Counter(tagger_pb2.FindingKind.Name(f.kind) for f in answer.findings)
    assert set(shown) == set(answer.counts_by_kind) and len(shown) >= 3
    assert all(n == min(2, answer.counts_by_kind[kind]) for kind, n in shown.items())
    with pytest.raises(grpc.RpcError) as bad:
        stub.Audit(tagger_pb2.AuditRequest(limit_per_kind=-1), timeout=30)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
