"""Weighted reciprocal rank fusion, and the hybrid Search of the service on a real embedded store
with a stand-in embedder (CLIP text-to-image, outages and recovery, which the integration tests
cannot have without CLIP weights)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest

from vitrine.common.errors import ServiceError, unavailable
from vitrine.search import keywords
from vitrine.search.fusion import Match, check_weights, fuse
from vitrine.search.machine_tags import MachineTags, TextVectors
from vitrine.search.query_planner import DEGRADED
from vitrine.search.server import SearchService
from vitrine.search.settings import SearchSettings
from vitrine.search.store import ScoredObject, StoredPoint
from vitrine.v1 import common_pb2, search_pb2


def ranked(*ids: str) -> list[ScoredObject]:
    return [ScoredObject(i, 1.0 - n / 100, {"title": i}) for n, i in enumerate(ids)]


def test_fusion_sums_weighted_reciprocal_ranks_and_keeps_each_signals_place() -> None:
    hits = fuse({"text": ranked("a", "b", "c"), "keyword": ranked("c", "d")}, {"text": 1.0, "keyword": 2.0}, k=10)
    by_id = {h.id: h for h in hits}
    assert by_id["c"].score == pytest.approx(1 / 13 + 2 / 11)
    assert by_id["c"].matches == {"text": Match(3, 0.98), "keyword": Match(1, 1.0)}
    assert by_id["a"].matches == {"text": Match(1, 1.0)}  # only the signals that found it
    assert [h.id for h in hits] == ["c", "d", "a", "b"]
    assert by_id["a"].payload == {"title": "a"}


def test_weight_zero_drops_a_signal_entirely() -> None:
    hits = fuse({"text": ranked("a", "b"), "keyword": ranked("c")}, {"text": 1.0, "keyword": 0.0})
    assert [h.id for h in hits] == ["a", "b"]
    assert all(set(h.matches) == {"text"} for h in hits)
    assert fuse({"text": ranked("a")}, {}) == []


def test_ties_are_broken_by_best_rank_then_id() -> None:
    # a: ranks 1 and 4, b: 2 and 3, with k = 0 and equal weights... not equal sums; build a real tie:
    hits = fuse({"text": ranked("x", "y"), "keyword": ranked("y", "x")}, {"text": 1.0, "keyword": 1.0})
    assert [h.id for h in hits] == ["x", "y"]  # same score, same best rank: smaller id first
    hits = fuse({"text": ranked("b", "q", "r", "a")}, {"text": 1.0}, k=60)
    assert [h.id for h in hits] == ["b", "q", "r", "a"]


def test_an_object_listed_twice_counts_once() -> None:
    hits = fuse({"text": [*ranked("a"), ScoredObject("a", 0.1, {})]}, {"text": 1.0}, k=10)
    assert len(hits) == 1 and hits[0].score == pytest.approx(1 / 11)


def test_first_ids_come_first_whatever_the_weights() -> None:
    lists = {"text": ranked(*"abcdefgh"), "keyword": ranked(*"hgfedcba")}
    hits = fuse(lists, {"text": 100.0, "keyword": 0.01}, k=1, first=["h"])
    assert hits[0].id == "h"
    assert [h.id for h in hits[1:]] == list("abcdefg")
    assert fuse(lists, {"text": 1.0, "keyword": 1.0}, first=["zzz"])[0].id in "ah"  # unknown ids: no effect


def test_pages_of_the_same_fusion_are_consistent() -> None:
    rng = np.random.default_rng(0)
    ids = [f"o{i:03d}" for i in range(300)]
    lists = {name: ranked(*rng.permutation(ids)[:200]) for name in ("text", "keyword", "image")}
    weights = {"text": 1.0, "keyword": 0.7, "image": 0.4}
    everything = [h.id for h in fuse(lists, weights)]
    pages = [[h.id for h in fuse(lists, weights)[start : start + 12]] for start in range(0, 48, 12)]
    assert [i for page in pages for i in page] == everything[:48]
    assert len(set(everything)) == len(everything)
    scores = [h.score for h in fuse(lists, weights)]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("weights", "fragment"),
    [
        ({"visual": 1.0}, "'visual'"),
        ({"Text": 1.0}, "'Text'"),
        ({"text": -0.5}, "'text'"),
        ({"image": float("nan")}, "'image'"),
        ({"keyword": float("inf")}, "'keyword'"),
    ],
)
def test_bad_weights_name_the_key(weights: dict[str, float], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        check_weights(weights, ["text", "keyword", "image"])


def test_good_weights_pass() -> None:
    assert check_weights({"text": 1, "image": 0}, ["text", "keyword", "image"]) == {"text": 1.0, "image": 0.0}


# ----------------------------------------------------------------------------------------------
# The service's Search with a stand-in embedder
# ----------------------------------------------------------------------------------------------

DIM = 8
OBJECTS = [
    common_pb2.CollectionObject(id="N00001", title="Blue vase with flowers", medium="Oil paint on canvas"),
    common_pb2.CollectionObject(id="N00002", title="Portrait of a lady", medium="Oil paint on canvas"),
    common_pb2.CollectionObject(id="N00003", title="Chinese porcelain jar", medium="Porcelain"),
    common_pb2.CollectionObject(id="N00004", title="Storm at sea", medium="Watercolour on paper"),
    common_pb2.CollectionObject(id="N00005", title="Photograph of a harbour", medium="Gelatin silver print"),
]


def _direction(n: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[n] = 1.0
    return v


class FakeEmbedder:
    """Text vectors: the query "about object n" points at object n (text space); CLIP puts every
    query on the image of N00004. `down` makes every call fail as an unreachable embedder does."""

    def __init__(self) -> None:
        self.down = False
        self.busy = False
        self.calls: list[tuple[str, str]] = []

    async def embed_texts(self, model: str, texts: Sequence[str]) -> np.ndarray:
        self.calls.append((model, texts[0]))
        if self.down:
            raise unavailable("embedder at fake unavailable (UNAVAILABLE: connection refused); retry later")
        if self.busy:
            raise unavailable("embedder at fake is busy: no answer within 5 s", "EMBEDDER_BUSY")
        if model == "clip":
            return np.stack([_direction(3) for _ in texts])
        rows = []
        for text in texts:
            hit = next((n for n, o in enumerate(OBJECTS) if o.title.split()[0].lower() in text.lower()), 7)
            rows.append(_direction(hit) + 0.1 * _direction(7))
        return np.stack(rows)

    async def close(self) -> None:
        pass


@pytest.fixture
async def service(tmp_path: Path) -> SearchService:
    svc = SearchService(SearchSettings(data_dir=str(tmp_path), collection="objects"))
    await svc.store.ensure_collection({"text": DIM, "image": DIM})
    points = []
    for n, obj in enumerate(OBJECTS):
        vectors = {"text": _direction(n), **keywords.object_vectors(obj)}
        if n % 2:  # N00002 and N00004 have images
            vectors["image"] = _direction(n)
        points.append(StoredPoint(obj.id, vectors, {"title": obj.title, "medium": obj.medium}))
    await svc.store.upsert(points)
    fake = FakeEmbedder()
    svc._query_embedder = fake  # type: ignore[assignment]
    svc.text_model, svc.image_model, svc.text_to_image = "mpnet", "clip", True
    svc.ready = True
    yield svc
    await svc.store.close()


def _signals(hit: search_pb2.SearchHit) -> dict[int, int]:
    return {s.signal: s.rank for s in hit.signals}


async def test_search_fuses_text_keyword_and_image(service: SearchService) -> None:
    answer = await service.search(search_pb2.SearchRequest(query="portrait"))
    assert not answer.unavailable_signals and not answer.notices
    first = answer.hits[0]
    assert first.object.id == "N00002"  # text rank 1 and the only keyword match
    assert _signals(first) == {search_pb2.SIGNAL_TEXT: 1, search_pb2.SIGNAL_KEYWORD: 1, search_pb2.SIGNAL_IMAGE: 2}
    storm = next(h for h in answer.hits if h.object.id == "N00004")
    assert _signals(storm)[search_pb2.SIGNAL_IMAGE] == 1  # CLIP's pick
    # Objects without an image are never found by the image signal.
    assert all(search_pb2.SIGNAL_IMAGE not in _signals(h) for h in answer.hits if h.object.id in ("N00001", "N00003"))
    assert {m for m, _ in service._query_embedder.calls} == {"mpnet", "clip"}  # type: ignore[union-attr]

    image_only = await service.search(
        search_pb2.SearchRequest(query="portrait", signal_weights={"text": 0, "keyword": 0})
    )
    assert [h.object.id for h in image_only.hits] == ["N00004", "N00002"]


async def test_signal_weights_are_validated(service: SearchService) -> None:
    for weights, fragment in [
        ({"colour": 1}, "'colour'"),
        ({"text": -1}, "'text'"),
        ({"text": 0, "keyword": 0, "image": 0, "tags": 0}, "weight 0"),
    ]:
        with pytest.raises(ServiceError) as info:
            await service.search(search_pb2.SearchRequest(query="vase", signal_weights=weights))
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and fragment in info.value.message


async def test_multi_word_queries_need_not_match_every_word(service: SearchService) -> None:
    answer = await service.search(
        search_pb2.SearchRequest(query="ancient Chinese vase", signal_weights={"text": 0, "image": 0})
    )
    # No object has all three words: the vase and the Chinese jar come first (then the
    # looser trigram matches).
    assert {h.object.id for h in answer.hits[:2]} == {"N00001", "N00003"}


async def test_typos_are_corrected_from_the_collections_words(service: SearchService) -> None:
    answer = await service.search(search_pb2.SearchRequest(query="Potrait", signal_weights={"text": 0, "image": 0}))
    assert answer.hits[0].object.id == "N00002"
    assert any("'potrait': also searched for 'portrait'" in n for n in answer.notices)
    # The corrected text is what the embedder gets.
    await service.search(search_pb2.SearchRequest(query="potrait"))
    assert ("mpnet", "portrait") in service._query_embedder.calls  # type: ignore[union-attr]
    # "photo" meets "Photograph" through trigrams, no correction needed.
    photo = await service.search(search_pb2.SearchRequest(query="photo", signal_weights={"text": 0, "image": 0}))
    assert photo.hits[0].object.id == "N00005" and not photo.notices


async def test_accession_number_comes_first(service: SearchService) -> None:
    answer = await service.search(search_pb2.SearchRequest(query="n00004"))
    assert answer.hits[0].object.id == "N00004"
    assert _signals(answer.hits[0])[search_pb2.SIGNAL_KEYWORD] == 1


async def test_filters_apply_to_every_signal(service: SearchService) -> None:
    answer = await service.search(
        search_pb2.SearchRequest(query="portrait", filter=search_pb2.Filter(mediums=["Porcelain"]))
    )
    assert [h.object.id for h in answer.hits] == ["N00003"]


async def test_a_busy_embedder_is_told_apart_from_a_down_one(service: SearchService) -> None:
    fake: FakeEmbedder = service._query_embedder  # type: ignore[assignment]
    busy_before, down_before = (DEGRADED.labels(r)._value.get() for r in ("embedder_busy", "embedder_unavailable"))
    fake.busy = True
    answer = await service.search(search_pb2.SearchRequest(query="storm at sea"))
    fake.busy = False
    assert answer.hits[0].object.id == "N00004"
    assert any("embedder is busy" in n for n in answer.notices)
    assert not any("unavailable" in n for n in answer.notices)
    assert DEGRADED.labels("embedder_busy")._value.get() == busy_before + 1
    assert DEGRADED.labels("embedder_unavailable")._value.get() == down_before


async def test_embedder_down_gives_keyword_results_and_recovers(service: SearchService) -> None:
    fake: FakeEmbedder = service._query_embedder  # type: ignore[assignment]
    before = DEGRADED.labels("embedder_unavailable")._value.get()
    fake.down = True
    answer = await service.search(search_pb2.SearchRequest(query="storm at sea"))
    assert answer.hits[0].object.id == "N00004"
    assert all(_signals(h).keys() == {search_pb2.SIGNAL_KEYWORD} for h in answer.hits)
    assert list(answer.unavailable_signals) == [search_pb2.SIGNAL_IMAGE, search_pb2.SIGNAL_TEXT]
    assert any("embedder is unavailable" in n for n in answer.notices)
    assert DEGRADED.labels("embedder_unavailable")._value.get() == before + 1

    # Asked for meaning only, with the embedder down: keyword matches rather than nothing.
    text_only = {"text": 1, "keyword": 0, "image": 0, "tags": 0}
    answer = await service.search(search_pb2.SearchRequest(query="storm at sea", signal_weights=text_only))
    assert answer.hits[0].object.id == "N00004"
    assert _signals(answer.hits[0]).keys() == {search_pb2.SIGNAL_KEYWORD}

    fake.down = False
    answer = await service.search(search_pb2.SearchRequest(query="storm at sea"))
    assert not answer.unavailable_signals and not answer.notices
    assert _signals(answer.hits[0]).keys() == {
        search_pb2.SIGNAL_TEXT,
        search_pb2.SIGNAL_KEYWORD,
        search_pb2.SIGNAL_IMAGE,
    }


async def test_without_clip_the_image_signal_is_reported_unavailable(service: SearchService) -> None:
    service.text_to_image = False
    answer = await service.search(search_pb2.SearchRequest(query="vase"))
    assert list(answer.unavailable_signals) == [search_pb2.SIGNAL_IMAGE]
    assert "CLIP" in answer.notices[0]
    assert all(search_pb2.SIGNAL_IMAGE not in _signals(h) for h in answer.hits)


async def test_pages_do_not_overlap(service: SearchService) -> None:
    first = await service.search(
        search_pb2.SearchRequest(query="oil painting", page=common_pb2.PageRequest(page_size=2))
    )
    assert first.page.next_page_token == "2"
    second = await service.search(
        search_pb2.SearchRequest(query="oil painting", page=common_pb2.PageRequest(page_size=2, page_token="2"))
    )
    everything = await service.search(search_pb2.SearchRequest(query="oil painting"))
    assert [h.object.id for h in [*first.hits, *second.hits]] == [h.object.id for h in everything.hits[:4]]
    assert len(everything.hits) == len(OBJECTS)  # the text signal ranks every object


# ----------------------------------------------------------------------------------------------
# Subject tags: curators' and machine tags, through UpsertObjects with a stand-in tagger
# ----------------------------------------------------------------------------------------------


class FakeTagger:
    """Machine tags by object id; `down` answers as MachineTagger does when the tagger is out."""

    def __init__(self, tags: dict[str, list[tuple[str, float]]]) -> None:
        self.tags = tags
        self.down = False
        self.calls = 0
        self.vectors: list[TextVectors | None] = []
        self.model_version = "tagger-v1"

    async def version(self) -> str:
        return "" if self.down else self.model_version

    async def tag(
        self, objects: Sequence[common_pb2.CollectionObject], vectors: TextVectors | None = None
    ) -> dict[str, MachineTags] | None:
        self.calls += 1
        self.vectors.append(vectors)
        if self.down:
            return None
        return {o.id: MachineTags(tuple(self.tags[o.id]), self.model_version) for o in objects if o.id in self.tags}

    async def close(self) -> None:
        pass


@pytest.fixture
async def tagged(tmp_path: Path) -> SearchService:
    svc = SearchService(SearchSettings(data_dir=str(tmp_path), collection="objects"))
    await svc.store.ensure_collection({"text": DIM})
    fake = FakeEmbedder()
    svc._embedder = svc._query_embedder = fake  # type: ignore[assignment]
    svc.text_model, svc.image_model = "mpnet", ""
    svc.tagger = FakeTagger({"N00004": [("sea", 0.9), ("fish", 0.6)], "N00001": [("flower", 0.95)]})  # type: ignore[assignment]
    svc.ready = True
    yield svc
    await svc.store.close()


def _with_subjects() -> list[common_pb2.CollectionObject]:
    objects = [common_pb2.CollectionObject(id=o.id, title=o.title, medium=o.medium) for o in OBJECTS]
    objects[4].subjects.append("harbour, quay")  # the curators' own tag
    return objects


async def test_machine_tags_are_stored_and_searchable(tagged: SearchService) -> None:
    answer = await tagged.upsert(_with_subjects())
    assert answer.upserted == len(OBJECTS)
    stored = await tagged.get_object("N00004")
    assert [(t.label, round(t.score, 2)) for t in stored.machine_tags] == [("sea", 0.9), ("fish", 0.6)]
    assert stored.machine_tags_version == "tagger-v1"
    assert not (await tagged.get_object("N00002")).machine_tags
    # The tagger got the text vectors just stored, so it need not embed the texts again.
    fake: FakeTagger = tagged.tagger  # type: ignore[assignment]
    (sent,) = fake.vectors
    assert sent is not None and sent.model == tagged.text_model and set(sent.rows) == {o.id for o in OBJECTS}

    tags_only = {"text": 0, "keyword": 0, "image": 0}
    # No catalogue text says "fish": only the machine tag finds the storm at sea.
    fish = await tagged.search(search_pb2.SearchRequest(query="fish", signal_weights=tags_only))
    assert [h.object.id for h in fish.hits] == ["N00004"]
    assert _signals(fish.hits[0]) == {search_pb2.SIGNAL_TAGS: 1}
    # The curators' tags are searchable the same way.
    quay = await tagged.search(search_pb2.SearchRequest(query="quay", signal_weights=tags_only))
    assert [h.object.id for h in quay.hits] == ["N00005"]
    # A typo of a word only a tag has is corrected from the tags.
    typo = await tagged.search(search_pb2.SearchRequest(query="fsih", signal_weights=tags_only))
    assert [h.object.id for h in typo.hits] == ["N00004"]
    assert any("'fsih': also searched for 'fish'" in n for n in typo.notices)
    # In the default fusion the tags signal counts next to the others.
    fused = await tagged.search(search_pb2.SearchRequest(query="flower"))
    assert fused.hits[0].object.id == "N00001"
    assert search_pb2.SIGNAL_TAGS in _signals(fused.hits[0])
    off = await tagged.search(search_pb2.SearchRequest(query="fish", signal_weights={"tags": 0}))
    assert all(search_pb2.SIGNAL_TAGS not in _signals(h) for h in off.hits)


async def test_objects_stored_while_the_tagger_is_down_are_tagged_on_the_next_ingest(tagged: SearchService) -> None:
    tagger: FakeTagger = tagged.tagger  # type: ignore[assignment]
    tagger.down = True
    first = await tagged.upsert(_with_subjects())
    assert first.upserted == len(OBJECTS)  # the write does not wait for the tagger
    assert not (await tagged.get_object("N00004")).machine_tags
    tagger.down = False
    again = await tagged.upsert(_with_subjects())
    assert again.upserted == len(OBJECTS) and again.unchanged == 0
    assert [t.label for t in (await tagged.get_object("N00004")).machine_tags] == ["sea", "fish"]
    third = await tagged.upsert(_with_subjects())
    assert third.unchanged == len(OBJECTS)
    assert tagger.calls == 2  # unchanged objects are not tagged again


async def test_a_new_tagger_version_re_tags_objects_on_the_next_ingest(tagged: SearchService) -> None:
    tagger: FakeTagger = tagged.tagger  # type: ignore[assignment]
    await tagged.upsert(_with_subjects())
    assert (await tagged.upsert(_with_subjects())).unchanged == len(OBJECTS)
    # The tagger serves a new model that also sees a boat in the storm.
    tagger.model_version = "tagger-v2"
    tagger.tags["N00004"] = [("sea", 0.8), ("boat", 0.7)]
    again = await tagged.upsert(_with_subjects())
    assert again.upserted == len(OBJECTS) and again.unchanged == 0
    stored = await tagged.get_object("N00004")
    assert stored.machine_tags_version == "tagger-v2"
    assert [t.label for t in stored.machine_tags] == ["sea", "boat"]
    # Objects the tagger gave nothing are marked with the version too, so not asked again.
    assert (await tagged.get_object("N00002")).machine_tags_version == "tagger-v2"
    assert (await tagged.upsert(_with_subjects())).unchanged == len(OBJECTS)
    boat = await tagged.search(search_pb2.SearchRequest(query="boat", signal_weights={"text": 0, "keyword": 0}))
    assert [h.object.id for h in boat.hits] == ["N00004"]
    # While the tagger is down its version is unknown: stored tags are kept, nothing re-tagged.
    tagger.down = True
    assert (await tagged.upsert(_with_subjects())).unchanged == len(OBJECTS)
    assert [t.label for t in (await tagged.get_object("N00004")).machine_tags] == ["sea", "boat"]
