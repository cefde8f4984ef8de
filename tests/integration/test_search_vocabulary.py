"""Search with a SKOS vocabulary: two real search servers on one real embedder (MiniLM), one
started with the YSO archaeology slice (VITRINE_SEARCH_VOCABULARY, tests/fixtures/skos, CC BY
4.0), one without, both holding the same 240 real Finnish catalogue titles of the fixture's
Finna.fi corpus (CC0) with their YSO subjects: half named by the concept's English prefLabel,
half by its URI as the corpus gives them. A query that is only an altLabel, or a label in
another language, finds the objects tagged with the preferred label through the tags signal;
without the vocabulary it finds none of them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from tests.conftest import FIXTURES
from tests.servers import free_port, minilm_search_env, running_service, start_service
from vitrine.common.vocabulary import Vocabulary
from vitrine.search import keywords
from vitrine.v1 import common_pb2, search_pb2, search_pb2_grpc

SKOS = FIXTURES / "skos"
VOCABULARY = SKOS / "yso-archaeology.ttl"
TITLES = SKOS / "yso-archaeology-titles.tsv"
OBJECTS = 240
TAGS_ONLY = {"text": 0.0, "keyword": 0.0, "image": 0.0, "tags": 1.0}


@dataclass
class Collection:
    vocabulary: Vocabulary
    objects: list[common_pb2.CollectionObject]
    concepts: dict[str, set[str]]  # object id -> the subjects (prefLabels) of its concepts
    with_vocabulary: search_pb2_grpc.SearchServiceStub
    without: search_pb2_grpc.SearchServiceStub


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collection]:
    yso = Vocabulary.load(VOCABULARY)
    objects, concepts = [], {}
    for number, line in enumerate(TITLES.read_text(encoding="utf-8").splitlines()[:OBJECTS]):
        title, uris = line.split("\t")
        terms = [yso.by_uri[u.strip("<>")] for u in uris.split()]
        museum_id = f"finna-{number}"
        # Even objects carry prefLabels, odd ones the corpus's "<URI>"s.
        subjects = [t.subject for t in terms] if number % 2 == 0 else uris.split()
        objects.append(common_pb2.CollectionObject(id=museum_id, title=title, subjects=subjects))
        concepts[museum_id] = {t.subject for t in terms}
    base = tmp_path_factory.mktemp("search-vocabulary")
    with running_service("embedder", {"VITRINE_EMBEDDER_MODELS": "minilm"}) as embedder:
        env = minilm_search_env(embedder, base / "with")
        env["VITRINE_SEARCH_VOCABULARY"] = str(VOCABULARY)
        with (
            running_service("search", env) as searcher,
            running_service("search", minilm_search_env(embedder, base / "without")) as plain,
            grpc.insecure_channel(searcher.address) as one,
            grpc.insecure_channel(plain.address) as other,
        ):
            stubs = search_pb2_grpc.SearchServiceStub(one), search_pb2_grpc.SearchServiceStub(other)
            for stub in stubs:
                answer = stub.UpsertObjects(search_pb2.UpsertObjectsRequest(objects=objects), timeout=120)
                assert answer.upserted == OBJECTS and not answer.errors
            yield Collection(yso, objects, concepts, *stubs)


def search(
    stub: search_pb2_grpc.SearchServiceStub, query: str, weights: dict[str, float] | None = None
) -> list[search_pb2.SearchHit]:
    request = search_pb2.SearchRequest(query=query, page=common_pb2.PageRequest(page_size=100), signal_weights=weights)
    return list(stub.Search(request, timeout=30).hits)


def tagged(collection: Collection, subject: str, *, by_uri: bool | None = None) -> set[str]:
    """Ids of the objects tagged with the concept (only those naming it by URI / by label)."""
    return {
        o.id
        for number, o in enumerate(collection.objects)
        if subject in collection.concepts[o.id] and (by_uri is None or by_uri == (number % 2 == 1))
    }


def labelled(collection: Collection, query: str) -> set[str]:
    """Ids of the objects with a concept that has a word of the query in any of its labels."""
    wanted = set(keywords.query_terms(query))
    return {
        museum_id
        for museum_id, subjects in collection.concepts.items()
        for s in subjects
        if wanted & {t for name in collection.vocabulary.by_subject[s].names for t in keywords.terms(name)}
    }


def has_tags_signal(hit: search_pb2.SearchHit) -> bool:
    return any(s.signal == search_pb2.SIGNAL_TAGS for s in hit.signals)


@pytest.mark.parametrize(
    ("query", "subject"),
    [
        ("tombs", "graves"),  # graves' English altLabel
        ("clay dishes", "pottery"),  # pottery's English altLabel
        ("muinaisesineet", "antiquities"),  # antiquities' Finnish prefLabel
    ],
)
def test_an_alt_label_query_finds_the_objects_tagged_with_the_preferred_label(
    collection: Collection, query: str, subject: str
) -> None:
    wanted = tagged(collection, subject)
    by_label = tagged(collection, subject, by_uri=False)
    assert len(by_label) >= 2, "the fixture's first titles carry the concept by prefLabel"
    # Only the objects of that concept: no other term of the slice has these words.
    assert labelled(collection, query) == wanted
    assert {h.object.id for h in search(collection.with_vocabulary, query, TAGS_ONLY)} == wanted
    # With every signal, they come through the tags signal, and the best of them first.
    hits = search(collection.with_vocabulary, query)
    assert {h.object.id for h in hits if has_tags_signal(h)} == wanted
    assert hits[0].object.id in wanted
    # Without the vocabulary the tags signal has nothing for the query.
    assert search(collection.without, query, TAGS_ONLY) == []
    assert not any(has_tags_signal(h) for h in search(collection.without, query))


def test_tags_given_by_uri_are_found_by_their_labels(collection: Collection) -> None:
    by_uri = tagged(collection, "coin finds", by_uri=True)
    assert by_uri
    found = {h.object.id for h in search(collection.with_vocabulary, "coin finds", TAGS_ONLY)}
    # Every object with a concept labelled "coin" or "find(s)" ("bog finds", "grave findings"),
    # whether the object names it by label or by URI.
    assert by_uri <= found and found == labelled(collection, "coin finds")
    # Without the vocabulary a URI is no label: only the objects naming the concept by label match.
    plain = {h.object.id for h in search(collection.without, "coin finds", TAGS_ONLY)}
    assert not by_uri & plain and tagged(collection, "coin finds", by_uri=False) <= plain


def test_reingest_with_the_same_vocabulary_changes_nothing(collection: Collection) -> None:
    for stub in (collection.with_vocabulary, collection.without):
        answer = stub.UpsertObjects(search_pb2.UpsertObjectsRequest(objects=collection.objects[:50]), timeout=60)
        assert (answer.upserted, answer.unchanged) == (0, 50)


def test_an_unreadable_vocabulary_stops_the_start_up_and_says_which_setting(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = tmp_path_factory.mktemp("search-bad-vocabulary")
    broken = base / "broken.ttl"
    broken.write_text("this is not turtle <")
    for path, reason in ((broken, "not readable as turtle"), (base / "missing.ttl", "No such file")):
        env = {
            "VITRINE_SEARCH_DATA_DIR": str(base / "data"),
            "VITRINE_SEARCH_EMBEDDER_ADDRESS": f"127.0.0.1:{free_port()}",  # never asked: it fails first
            "VITRINE_SEARCH_VOCABULARY": str(path),
        }
        service = start_service("search", env)
        try:
            assert service.process.wait(60) == 1
        finally:
            service.stop()
        log = service.log_tail()
        assert "VITRINE_SEARCH_VOCABULARY" in log and reason in log, log
