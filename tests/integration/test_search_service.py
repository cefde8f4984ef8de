"""The search service end to end: a real embedder (minilm + efficientnet-lite0), a real search
server on an embedded store in tmp_path, records loaded through the CLI.

The tests of this module share one pair of servers and run in file order: the last ones
restart the search service and stop the embedder."""

from __future__ import annotations

import gzip
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.servers import LOG_DIR, ServiceProcess, minilm_search_env, running_service, search_cli, start_service
from vitrine.launcher import start_service as launch
from vitrine.v1 import common_pb2, search_pb2, search_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
PAINTINGS = DATA / "paintings" / "metadata.jsonl"
N_PAINTINGS = 20
SEA_WORDS = re.compile(r"(?i)\b(ship|boat|sea|storm|wreck|shipping|vessel|sail|coast|harbour)")


def _tate_subset() -> tuple[list[dict[str, Any]], set[str]]:
    """50 Tate records: 10 of ships and the sea (by their curators' subjects and title), 40 with
    nothing of the sea. Returns the records and the ids of the sea ones."""
    with gzip.open(DATA / "tate" / "tate_dev.jsonl.gz", "rt") as handle:
        records = [json.loads(line) for line in handle]

    def sea_subjects(r: dict[str, Any]) -> bool:
        return any("seascapes" in p or "transport: water" in p for p in r["subject_paths"])

    sea = [r for r in records if sea_subjects(r) and SEA_WORDS.search(r["title"] or "")]
    dry = [r for r in records if r["subjects"] and not sea_subjects(r) and not SEA_WORDS.search(r["title"] or "")]
    chosen_sea = sea[:: len(sea) // 10][:10]
    chosen_dry = dry[:: len(dry) // 40][:40]
    return chosen_sea + chosen_dry, {r["id"] for r in chosen_sea}


@pytest.fixture(scope="module")
def tate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str], list[dict[str, Any]]]:
    records, sea_ids = _tate_subset()
    path = tmp_path_factory.mktemp("records") / "tate_subset.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path, sea_ids, records


@pytest.fixture(scope="module")
def embedder() -> Iterator[ServiceProcess]:
    with running_service("embedder", {"VITRINE_EMBEDDER_MODELS": "minilm,efficientnet-lite0"}) as service:
        yield service


@pytest.fixture(scope="module")
def search_env(embedder: ServiceProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return minilm_search_env(embedder, tmp_path_factory.mktemp("search-data"))


@pytest.fixture(scope="module")
def search(search_env: dict[str, str]) -> Iterator[ServiceProcess]:
    with running_service("search", search_env) as service:
        yield service


@pytest.fixture(scope="module")
def stub(search: ServiceProcess) -> Iterator[search_pb2_grpc.SearchServiceStub]:
    with grpc.insecure_channel(search.address) as channel:
        yield search_pb2_grpc.SearchServiceStub(channel)


@pytest.fixture(scope="module")
def loaded(search: ServiceProcess, tate: tuple[Path, set[str], list[dict[str, Any]]]) -> tuple[str, str]:
    tate_out = search_cli(search, "ingest", str(tate[0]), "--quiet")
    paintings_out = search_cli(
        search, "ingest", str(PAINTINGS), "--images", str(PAINTINGS.parent / "images"), "--limit", str(N_PAINTINGS)
    )
    return tate_out, paintings_out


def _code(call: Any, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    return info.value.code(), info.value.details()


def test_ingest_through_the_cli(loaded: tuple[str, str], stub: search_pb2_grpc.SearchServiceStub) -> None:
    tate_out, paintings_out = loaded
    assert "50 records" in tate_out and "50 upserted, 0 unchanged, 0 skipped" in tate_out
    assert f"{N_PAINTINGS} upserted" in paintings_out and f"{N_PAINTINGS} sent with an image" in paintings_out
    info = stub.GetCollectionInfo(search_pb2.GetCollectionInfoRequest(), timeout=10)
    assert info.objects == 50 + N_PAINTINGS
    assert info.objects_with_image == N_PAINTINGS
    assert info.store == "embedded"
    assert dict(info.vector_dimensions) == {"text": 384, "image": 1360}
    assert (info.text_model, info.image_model) == ("minilm", "efficientnet-lite0")


def test_get_object(loaded: tuple[str, str], stub: search_pb2_grpc.SearchServiceStub, tate: Any) -> None:
    record = tate[2][0]
    answer = stub.GetObject(search_pb2.GetObjectRequest(id=record["id"]), timeout=10)
    assert answer.object.title == record["title"]
    assert answer.object.artist == record["artist"]
    assert list(answer.object.subjects) == list(dict.fromkeys(record["subjects"]))
    assert answer.object.extra["credit_line"] == record["credit_line"]
    assert list(answer.vectors) == ["text"]

    painting = stub.GetObject(search_pb2.GetObjectRequest(id="met-247009"), timeout=10)
    assert painting.object.year == -50
    assert painting.object.extra["image_source"] == "images/met-247009.jpg"
    assert list(painting.vectors) == ["image", "text"]


def test_reingest_is_a_no_op(loaded: tuple[str, str], search: ServiceProcess, tate: Any) -> None:
    out = search_cli(search, "ingest", str(tate[0]), "--quiet")
    assert "0 upserted, 50 unchanged, 0 skipped" in out
    out = search_cli(
        search, "ingest", str(PAINTINGS), "--limit", str(N_PAINTINGS), "--quiet"
    )  # images found next to it
    assert f"0 upserted, {N_PAINTINGS} unchanged" in out


def test_search_finds_ships_at_sea(loaded: tuple[str, str], stub: search_pb2_grpc.SearchServiceStub, tate: Any) -> None:
    sea_ids = tate[1]
    answer = stub.Search(search_pb2.SearchRequest(query="sailing ship in a storm"), timeout=30)
    assert len(answer.hits) == 12  # the default page size
    top = [h.object.id for h in answer.hits[:5]]
    assert len(sea_ids.intersection(top)) >= 3, [h.object.title for h in answer.hits[:5]]
    for hit in answer.hits:
        # Each hit lists the signals that found it, with its rank in each; the fused score is
        # their weighted reciprocal ranks (default weights 1, tags 1.5; k = 10). The Tate records
        # carry their curators' subjects, which the tags signal matches.
        names = [s.signal for s in hit.signals]
        assert search_pb2.SIGNAL_TEXT in names
        assert set(names) <= {search_pb2.SIGNAL_TEXT, search_pb2.SIGNAL_KEYWORD, search_pb2.SIGNAL_TAGS}
        weight = {search_pb2.SIGNAL_TAGS: 1.5}
        expected = sum(weight.get(s.signal, 1.0) / (10 + s.rank) for s in hit.signals)
        assert hit.score == pytest.approx(expected, rel=1e-5)
    scores = [h.score for h in answer.hits]
    assert scores == sorted(scores, reverse=True)
    # No CLIP weights here: the answer says text-to-image matching was not available.
    assert list(answer.unavailable_signals) == [search_pb2.SIGNAL_IMAGE]
    assert "CLIP" in answer.notices[0]

    # The next page continues where the first stopped: together they are the first 24.
    assert answer.page.next_page_token == "12"
    page2 = stub.Search(
        search_pb2.SearchRequest(query="sailing ship in a storm", page=common_pb2.PageRequest(page_token="12")),
        timeout=30,
    )
    both = stub.Search(
        search_pb2.SearchRequest(query="sailing ship in a storm", page=common_pb2.PageRequest(page_size=24)),
        timeout=30,
    )
    assert [h.object.id for h in [*answer.hits, *page2.hits]] == [h.object.id for h in both.hits]


def _signals(hit: search_pb2.SearchHit) -> dict[int, int]:
    """Signal -> the hit's rank in that signal's list."""
    return {s.signal: s.rank for s in hit.signals}


def _search(stub: search_pb2_grpc.SearchServiceStub, query: str, **fields: Any) -> search_pb2.SearchResponse:
    return stub.Search(search_pb2.SearchRequest(query=query, **fields), timeout=30)


def test_hybrid_search_needs_not_every_word(
    loaded: tuple[str, str], stub: search_pb2_grpc.SearchServiceStub, tate: Any
) -> None:
    # "ancient Chinese vase" used to return nothing because every word had to match. No object
    # here has all of these words; the one with most of them comes first, found by both signals.
    query = "medieval saint fighting a dragon vase"
    texts = [json.dumps(r).lower() for r in tate[2]] + PAINTINGS.read_text().lower().splitlines()[:N_PAINTINGS]
    assert not [t for t in texts if all(w in t for w in ("saint", "dragon", "vase"))]
    answer = _search(stub, query)
    assert len(answer.hits) == 12
    first = answer.hits[0]
    assert first.object.id == "wikidata-Q19912023", [
        (h.object.title, _signals(h), h.score) for h in answer.hits[:3]
    ]  # Saint Michael and the Dragon
    assert _signals(first).keys() == {search_pb2.SIGNAL_TEXT, search_pb2.SIGNAL_KEYWORD}
    assert _signals(first)[search_pb2.SIGNAL_KEYWORD] == 1
    # Other saints are found by the keyword "saint" as well.
    keyword_hits = [h for h in answer.hits if search_pb2.SIGNAL_KEYWORD in _signals(h)]
    assert len(keyword_hits) >= 5 and all("saint" in h.object.title.lower() for h in keyword_hits[:5])


def test_accession_numbers_and_exact_words_come_first(
    loaded: tuple[str, str], stub: search_pb2_grpc.SearchServiceStub
) -> None:
    for query, expected in [("D21175", "D21175"), ("d21175", "D21175"), ("met-247009", "met-247009")]:
        first = _search(stub, query).hits[0]
        assert first.object.id == expected, query
        assert _signals(first)[search_pb2.SIGNAL_KEYWORD] == 1
    # "photo" finds "Photograph, gelatin silver print" (a word that starts the same).
    first = _search(stub, "photo").hits[0]
    assert first.object.id == "P80143" and search_pb2.SIGNAL_KEYWORD in _signals(first)


def test_a_typo_still_finds_the_object(loaded: tuple[str, str], stub: search_pb2_grpc.SearchServiceStub) -> None:
    for query, expected, fixed in [
        ("Dormiton of the Virgin", "wikidata-Q78632682", "dormition"),  # a letter missing
        ("Gainsbrough", "N01482", "gainsborough"),
        ("Taima Mandlaa", "wikidata-Q78850435", "mandala"),  # two letters swapped
    ]:
        answer = _search(stub, query)
        top = [h.object.id for h in answer.hits[:3]]
        assert expected in top, (query, [h.object.title for h in answer.hits[:3]])
        hit = answer.hits[top.index(expected)]
        assert search_pb2.SIGNAL_KEYWORD in _signals(hit)
        assert any(f"'{fixed}'" in n.lower() for n in answer.notices), answer.notices
    # A query whose words all exist is left as it is.
    assert not [n for n in _search(stub, "Dormition of the Virgin").notices if "also searched" in n]


def test_signal_weights(loaded: tuple[str, str], stub: search_pb2_grpc.SearchServiceStub) -> None:
    text_only = _search(stub, "sailing boats", signal_weights={"text": 1, "keyword": 0, "image": 0, "tags": 0})
    assert len(text_only.hits) == 12
    assert all(_signals(h).keys() == {search_pb2.SIGNAL_TEXT} for h in text_only.hits)
    keyword_only = _search(stub, "sailing boats", signal_weights={"text": 0, "tags": 0})
    assert keyword_only.hits and all(_signals(h).keys() == {search_pb2.SIGNAL_KEYWORD} for h in keyword_only.hits)
    assert [_signals(h)[search_pb2.SIGNAL_KEYWORD] for h in keyword_only.hits] == list(
        range(1, len(keyword_only.hits) + 1)
    )

    cases = [
        ({"colour": 1.0}, "'colour'"),
        ({"text": -1.0}, "'text'"),
        ({"keyword": float("nan")}, "'keyword'"),
        ({"text": 0.0, "keyword": 0.0, "image": 0.0, "tags": 0.0}, "weight 0"),
    ]
    for weights, fragment in cases:
        code, details = _code(stub.Search, search_pb2.SearchRequest(query="boats", signal_weights=weights))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and fragment in details, (weights, details)


def test_search_filters(loaded: tuple[str, str], stub: search_pb2_grpc.SearchServiceStub) -> None:
    with_image = stub.Search(
        search_pb2.SearchRequest(
            query="a painting",
            filter=search_pb2.Filter(has_image=True),
            page=common_pb2.PageRequest(page_size=100),
        ),
        timeout=30,
    )
    assert len(with_image.hits) == N_PAINTINGS
    assert not with_image.page.next_page_token
    old = stub.Search(search_pb2.SearchRequest(query="a painting", filter=search_pb2.Filter(year_to=1500)), timeout=30)
    assert old.hits and all(h.object.HasField("year") and h.object.year <= 1500 for h in old.hits)


def test_more_like_this(loaded: tuple[str, str], stub: search_pb2_grpc.SearchServiceStub, tate: Any) -> None:
    painting = stub.MoreLikeThis(search_pb2.MoreLikeThisRequest(id="met-247009", k=5), timeout=30)
    assert painting.space == search_pb2.VECTOR_SPACE_IMAGE  # it has an image
    assert len(painting.hits) == 5
    assert "met-247009" not in [h.object.id for h in painting.hits]
    assert all(
        h.signals[0].signal == search_pb2.SIGNAL_VISUAL and h.object.extra["image_source"] for h in painting.hits
    )

    record_id = tate[2][0]["id"]
    text = stub.MoreLikeThis(search_pb2.MoreLikeThisRequest(id=record_id, k=100), timeout=30)
    assert text.space == search_pb2.VECTOR_SPACE_TEXT
    assert len(text.hits) == 50 + N_PAINTINGS - 1
    assert record_id not in [h.object.id for h in text.hits]

    code, details = _code(
        stub.MoreLikeThis, search_pb2.MoreLikeThisRequest(id=record_id, space=search_pb2.VECTOR_SPACE_IMAGE)
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "no image vector" in details


def test_recommend_follows_likes_and_never_returns_seen(
    loaded: tuple[str, str], stub: search_pb2_grpc.SearchServiceStub, tate: Any
) -> None:
    paintings = [json.loads(line)["id"] for line in PAINTINGS.read_text().splitlines()[:N_PAINTINGS]]
    liked, disliked, seen = paintings[:3], paintings[3:4], paintings[4:8]
    for strategy in (search_pb2.RECOMMEND_STRATEGY_BEST_SCORE, search_pb2.RECOMMEND_STRATEGY_MEAN):
        for diversify in (False, True):
            request = search_pb2.RecommendRequest(
                liked_ids=liked, disliked_ids=disliked, seen_ids=seen, k=6, strategy=strategy, diversify=diversify
            )
            answer = stub.Recommend(request, timeout=30)
            ids = [h.object.id for h in answer.hits]
            assert answer.space == search_pb2.VECTOR_SPACE_IMAGE  # the liked paintings have images
            assert answer.strategy == strategy
            assert len(ids) == 6 and len(set(ids)) == 6
            assert not set(ids) & {*liked, *disliked, *seen}
            assert all(h.signals[0].signal == search_pb2.SIGNAL_VISUAL for h in answer.hits)

    # The best-score answer's top hit is the nearest image neighbour of one of the likes.
    answer = stub.Recommend(search_pb2.RecommendRequest(liked_ids=liked[:1], k=1), timeout=30)
    nearest = stub.MoreLikeThis(search_pb2.MoreLikeThisRequest(id=liked[0], k=1), timeout=30)
    assert answer.hits[0].object.id == nearest.hits[0].object.id

    # Text space: like two sea records, get sea-ish records back.
    sea = sorted(tate[1])
    text = stub.Recommend(
        search_pb2.RecommendRequest(liked_ids=sea[:2], k=5, space=search_pb2.VECTOR_SPACE_TEXT), timeout=30
    )
    assert len({h.object.id for h in text.hits} & set(sea)) >= 2

    # The seen list grows with the session: a second page never repeats the first.
    first = [h.object.id for h in stub.Recommend(search_pb2.RecommendRequest(liked_ids=liked, k=5), timeout=30).hits]
    second = stub.Recommend(search_pb2.RecommendRequest(liked_ids=liked, seen_ids=first, k=5), timeout=30)
    assert not {h.object.id for h in second.hits} & set(first)


def test_recommend_bad_requests(loaded: tuple[str, str], stub: search_pb2_grpc.SearchServiceStub) -> None:
    cases = [
        (search_pb2.RecommendRequest(), grpc.StatusCode.INVALID_ARGUMENT, "liked_ids is empty"),
        (search_pb2.RecommendRequest(liked_ids=["NOPE-1"]), grpc.StatusCode.NOT_FOUND, "NOPE-1"),
        (
            search_pb2.RecommendRequest(liked_ids=["met-247009"], disliked_ids=["met-247009"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "both liked and disliked",
        ),
        (search_pb2.RecommendRequest(liked_ids=["met-247009"], k=101), grpc.StatusCode.INVALID_ARGUMENT, "k is 101"),
        (
            search_pb2.RecommendRequest(liked_ids=[f"x{i}" for i in range(101)]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "at most 100",
        ),
        (search_pb2.RecommendRequest(liked_ids=["met-247009", " "]), grpc.StatusCode.INVALID_ARGUMENT, "liked_ids[1]"),
    ]
    for request, code, fragment in cases:
        got, details = _code(stub.Recommend, request)
        assert got == code and fragment in details, (request, got, details)


def test_bad_requests(loaded: tuple[str, str], stub: search_pb2_grpc.SearchServiceStub) -> None:
    code, details = _code(stub.GetObject, search_pb2.GetObjectRequest(id="NO-SUCH-ID"))
    assert code == grpc.StatusCode.NOT_FOUND and "NO-SUCH-ID" in details
    code, _ = _code(stub.MoreLikeThis, search_pb2.MoreLikeThisRequest(id="NO-SUCH-ID"))
    assert code == grpc.StatusCode.NOT_FOUND
    code, details = _code(stub.Search, search_pb2.SearchRequest(query="   "))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "query" in details
    code, _ = _code(stub.Search, search_pb2.SearchRequest(query="x" * 1001))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, details = _code(
        stub.Search, search_pb2.SearchRequest(query="ship", filter=search_pb2.Filter(year_from=1900, year_to=1800))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "year_from" in details
    code, _ = _code(stub.Search, search_pb2.SearchRequest(query="ship", page=common_pb2.PageRequest(page_size=101)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = _code(stub.Search, search_pb2.SearchRequest(query="ship", page=common_pb2.PageRequest(page_token="abc")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    twice = [common_pb2.CollectionObject(id="dup", title="a"), common_pb2.CollectionObject(id="dup", title="b")]
    code, details = _code(stub.UpsertObjects, search_pb2.UpsertObjectsRequest(objects=twice))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "dup" in details
    code, _ = _code(
        stub.UpsertObjects, search_pb2.UpsertObjectsRequest(objects=[common_pb2.CollectionObject(title="x")])
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = _code(stub.UpsertObjects, search_pb2.UpsertObjectsRequest())
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_upsert_skips_objects_with_nothing_to_embed(
    loaded: tuple[str, str], stub: search_pb2_grpc.SearchServiceStub
) -> None:
    answer = stub.UpsertObjects(
        search_pb2.UpsertObjectsRequest(
            objects=[
                common_pb2.CollectionObject(id="empty", extra={"museum": "Tate"}),
                common_pb2.CollectionObject(id="bad-image", image=common_pb2.Image(data=b"not an image")),
                common_pb2.CollectionObject(
                    id="text-only", title="A harbour at dusk", image=common_pb2.Image(data=b"x")
                ),
                common_pb2.CollectionObject(id="text-ok", title="A harbour at dawn"),
            ]
        ),
        timeout=30,
    )
    assert answer.upserted == 1
    reasons = {s.id: s.reason for s in answer.skipped}
    assert reasons["empty"] == "no metadata text to embed and no image"
    assert reasons["bad-image"].startswith("no metadata text to embed, and image not embedded")
    # A broken image refuses its object (per-object errors: tests/integration/test_search_objects.py).
    assert [(e.index, e.status.message.split(":")[0]) for e in answer.errors] == [
        (0, "objects[0]"),
        (1, "objects[1].image"),
        (2, "objects[2].image"),
    ]
    stored = stub.GetObject(search_pb2.GetObjectRequest(id="text-ok"), timeout=10)
    assert list(stored.vectors) == ["text"]


def test_the_tags_signal_wants_half_of_a_long_query(
    loaded: tuple[str, str], stub: search_pb2_grpc.SearchServiceStub
) -> None:
    # Tags cover a query of four words when they hold two of them; one word of the four is not
    # what was asked for (the store applies the rule as a filter on the tag term ids).
    subjects = {
        "cov-two": ["unicorns", "griffins"],
        "cov-three": ["unicorns", "griffins", "basilisks"],
        "cov-one": ["unicorns"],
        "cov-other": ["harpies"],
    }
    objects = [common_pb2.CollectionObject(id=i, title=f"Bestiary leaf {i}", subjects=s) for i, s in subjects.items()]
    assert stub.UpsertObjects(search_pb2.UpsertObjectsRequest(objects=objects), timeout=60).upserted == 4
    try:
        tags_only = {"text": 0.0, "keyword": 0.0, "image": 0.0, "tags": 1.0}
        long_query = _search(stub, "unicorns griffins basilisks dragons", signal_weights=tags_only)
        assert [h.object.id for h in long_query.hits] == ["cov-three", "cov-two"]
        # Two words: one of them is half.
        short_query = _search(stub, "unicorns dragons", signal_weights=tags_only)
        assert {h.object.id for h in short_query.hits} == {"cov-one", "cov-two", "cov-three"}
    finally:
        stub.DeleteObjects(search_pb2.DeleteObjectsRequest(ids=list(subjects)), timeout=10)


def test_delete(loaded: tuple[str, str], stub: search_pb2_grpc.SearchServiceStub) -> None:
    answer = stub.DeleteObjects(search_pb2.DeleteObjectsRequest(ids=["text-ok", "never-there"]), timeout=10)
    assert answer.deleted == 1
    code, _ = _code(stub.GetObject, search_pb2.GetObjectRequest(id="text-ok"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert stub.DeleteObjects(search_pb2.DeleteObjectsRequest(ids=["text-ok"]), timeout=10).deleted == 0


def test_restart_keeps_the_collection_and_embedder_outage_is_unavailable(
    loaded: tuple[str, str],
    search: ServiceProcess,
    search_env: dict[str, str],
    embedder: ServiceProcess,
    tate: Any,
) -> None:
    assert search.stop() == 0
    restarted = start_service("search", search_env)
    try:
        restarted.wait_serving(60)
        with grpc.insecure_channel(restarted.address) as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            info = stub.GetCollectionInfo(search_pb2.GetCollectionInfoRequest(), timeout=10)
            assert info.objects == 50 + N_PAINTINGS
            assert "0 upserted, 50 unchanged" in search_cli(restarted, "ingest", str(tate[0]), "--quiet")

            # Without the embedder, search answers from keywords and says so; reading stored
            # objects still works.
            embedder.stop()
            answer = _search(stub, "Sailing Boats off Coast")
            assert answer.hits[0].object.id == "D24130"
            assert all(_signals(h).keys() <= {search_pb2.SIGNAL_KEYWORD, search_pb2.SIGNAL_TAGS} for h in answer.hits)
            assert set(answer.unavailable_signals) == {search_pb2.SIGNAL_TEXT, search_pb2.SIGNAL_IMAGE}
            assert any("embedder is unavailable" in n for n in answer.notices)
            # Also when only the text signal was asked for: keyword matches rather than nothing.
            assert _search(stub, "Rhine passenger boat", signal_weights={"keyword": 0}).hits[0].object.id == "D28611"
            with urllib.request.urlopen(restarted.metrics_url, timeout=10) as page:
                metrics = page.read().decode()
            assert re.search(r'vitrine_search_degraded_total\{reason="embedder_unavailable"\} [2-9]', metrics)
            assert stub.GetObject(search_pb2.GetObjectRequest(id="met-247009"), timeout=10).object.id == "met-247009"

            # The embedder comes back (same port, text model only): the next search uses it again.
            back = launch(
                "embedder", LOG_DIR, {**embedder.env, "VITRINE_EMBEDDER_MODELS": "minilm"}, port=embedder.port
            )
            try:
                back.wait_serving(120)
                answer = _search(stub, "Sailing Boats off Coast")
                assert search_pb2.SIGNAL_TEXT in _signals(answer.hits[0])
                assert list(answer.unavailable_signals) == [search_pb2.SIGNAL_IMAGE]
            finally:
                back.stop()
    finally:
        restarted.stop()
