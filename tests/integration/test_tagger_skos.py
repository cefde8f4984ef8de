"""A tagger trained and served on a SKOS vocabulary: the real YSO archaeology slice (Finnish
labels) and 1,200 real Finnish catalogue titles indexed with its concept URIs (Finna.fi via the
Annif project, tests/fixtures/skos/README.md). The training data names subjects only by URI, so
training itself proves the URIs resolve to the vocabulary's terms. The running tagger answers
suggestions with the concept's URI and its broader paths, takes the object's own subjects and
curators' feedback by URI or label, and stores them as the tag ids it suggests."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.conftest import FIXTURES, ROOT
from tests.servers import ServiceProcess, running_service, start_service
from vitrine.common.vocabulary import Vocabulary
from vitrine.v1 import common_pb2, tagger_pb2, tagger_pb2_grpc

SKOS = FIXTURES / "skos"
VOCABULARY = SKOS / "yso-archaeology.ttl"
TITLES = SKOS / "yso-archaeology-titles.tsv"
LANGUAGE = "fi"
TRAINING = 1000  # the other 200 titles are asked about


@dataclass
class Served:
    tagger: ServiceProcess
    vocabulary: Vocabulary
    asked: list[common_pb2.CollectionObject]
    feedback_db: Path
    version: Path


def write_objects(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("tagger-skos")
    rows = []
    for number, line in enumerate(TITLES.read_text(encoding="utf-8").splitlines()):
        title, subjects = line.split("\t")
        rows.append({"id": f"finna-{number}", "title": title, "subjects": subjects.split()})  # "<URI>" as given
    write_objects(base / "train.jsonl", rows[:TRAINING])
    # The embedder starts while the tagger trains in this process's interpreter (MiniLM, local).
    embedder = start_service("embedder", {"VITRINE_EMBEDDER_MODELS": "minilm"})
    try:
        train = [
            sys.executable, "-m", "vitrine.tagger.cli", "train", "--vocabulary", str(VOCABULARY),
            "--vocabulary-language", LANGUAGE, "--data", str(base / "train.jsonl"), "--text-model", "minilm",
            "--out", str(base / "models" / "skos-v1"), "--threads", "2", "--cache", str(base / "embeddings.sqlite3"),
        ]  # fmt: skip
        trained = subprocess.run(train, cwd=ROOT, capture_output=True, text=True)
        assert trained.returncode == 0, trained.stderr[-3000:]
        embedder.wait_serving(180)
        env = {
            "VITRINE_TAGGER_EMBEDDER_ADDRESS": embedder.address,
            "VITRINE_TAGGER_MODEL_DIR": str(base / "models"),
            "VITRINE_TAGGER_VOCABULARY": str(VOCABULARY),
            "VITRINE_TAGGER_VOCABULARY_LANGUAGE": LANGUAGE,
            "VITRINE_TAGGER_FEEDBACK_DB": str(base / "feedback.sqlite3"),
            "VITRINE_TAGGER_AUDIT_REPORT": str(base / "audit" / "audit.json"),
        }
        with running_service("tagger", env) as tagger:
            asked = [common_pb2.CollectionObject(id=r["id"], title=r["title"]) for r in rows[TRAINING:][:40]]
            vocabulary = Vocabulary.load(VOCABULARY, LANGUAGE)
            yield Served(tagger, vocabulary, asked, base / "feedback.sqlite3", base / "models" / "skos-v1")
    finally:
        embedder.stop()


@pytest.fixture()
def stub(served: Served) -> tagger_pb2_grpc.TaggerServiceStub:
    return tagger_pb2_grpc.TaggerServiceStub(grpc.insecure_channel(served.tagger.address))


def suggest(stub: tagger_pb2_grpc.TaggerServiceStub, obj: common_pb2.CollectionObject) -> list:
    request = tagger_pb2.SuggestTagsRequest(object=obj, k=5, threshold=0.01)
    return list(stub.SuggestTags(request, timeout=60).suggestions)


def test_training_data_naming_concepts_by_uri_trains_their_tags(served: Served) -> None:
    meta = json.loads((served.version / "meta.json").read_text())
    assert meta["vocabulary_size"] == len(served.vocabulary) == 130
    # The 1,000 titles carry 100-odd distinct concepts, every one by "<URI>".
    assert meta["tags_known"] >= 100
    assert meta["tagged_training_objects"] == TRAINING
    # The semantic model embedded the Finnish (and untagged) altLabels beside the labels.
    texts, columns = served.vocabulary.alt_label_rows()
    assert len(texts) >= 30
    assert np.load(served.version / "tag_alt_columns.npy").tolist() == columns
    assert np.load(served.version / "tag_alt_vectors.npy").shape[0] == len(texts)


def test_suggestions_carry_the_concept_uri_and_its_broader_paths(
    served: Served, stub: tagger_pb2_grpc.TaggerServiceStub
) -> None:
    deep = 0
    for obj in served.asked:
        for s in suggest(stub, obj):
            term = served.vocabulary.by_subject[s.tag.id]
            assert s.tag.uri == term.uri and s.tag.uri.startswith("http://www.yso.fi/onto/yso/p")
            assert list(s.tag.paths) == list(term.paths) == list(s.explanation.tag_paths)
            assert all(path.endswith(s.tag.id) for path in s.tag.paths)
            deep += any(" > " in path for path in s.tag.paths)
    assert deep > 0, "no suggestion below a top concept"


def test_an_objects_own_subjects_by_uri_are_already_present(
    served: Served, stub: tagger_pb2_grpc.TaggerServiceStub
) -> None:
    obj = served.asked[0]
    first = suggest(stub, obj)[0]
    owned = common_pb2.CollectionObject()
    owned.CopyFrom(obj)
    owned.subjects.append(first.tag.uri)
    again = {s.tag.id: s for s in suggest(stub, owned)}
    assert again[first.tag.id].already_present


def test_feedback_by_uri_or_label_is_recorded_as_the_tag_id_and_honoured(
    served: Served, stub: tagger_pb2_grpc.TaggerServiceStub
) -> None:
    obj = served.asked[1]
    rejected = suggest(stub, obj)[0].tag
    by_uri = tagger_pb2.SubmitFeedbackRequest(
        feedback_id="skos-1",
        object_id=obj.id,
        tag=rejected.uri,
        action=tagger_pb2.FEEDBACK_ACTION_REJECT,
        curator_id="curator-1",
    )
    assert stub.SubmitFeedback(by_uri, timeout=30).created
    # The same item named by its label is the same content: a replay, not a conflict.
    by_label = tagger_pb2.SubmitFeedbackRequest()
    by_label.CopyFrom(by_uri)
    by_label.tag = rejected.id
    assert not stub.SubmitFeedback(by_label, timeout=30).created
    assert rejected.id not in {s.tag.id for s in suggest(stub, obj)}
    # An alternative label (Finnish altLabel) names its concept too.
    term = next(t for t in served.vocabulary if t.alt_labels)
    added = tagger_pb2.SubmitFeedbackRequest(
        feedback_id="skos-2",
        object_id=obj.id,
        tag=term.alt_labels[0],
        action=tagger_pb2.FEEDBACK_ACTION_ADD,
        curator_id="curator-1",
    )
    assert stub.SubmitFeedback(added, timeout=30).created
    with sqlite3.connect(served.feedback_db) as db:
        stored = dict(db.execute("SELECT feedback_id, tag FROM feedback WHERE feedback_id LIKE 'skos-%'").fetchall())
    assert stored == {"skos-1": rejected.id, "skos-2": term.subject}
    unknown = tagger_pb2.SubmitFeedbackRequest()
    unknown.CopyFrom(by_uri)
    unknown.feedback_id, unknown.tag = "skos-3", "http://www.yso.fi/onto/yso/p0"
    with pytest.raises(grpc.RpcError) as refused:
        stub.SubmitFeedback(unknown, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'http://www.yso.fi/onto/yso/p0' is not in the tagger's vocabulary" in refused.value.details()
