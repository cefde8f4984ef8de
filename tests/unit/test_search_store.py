"""Contract tests of the vector store, run against both implementations: the embedded engine
(qdrant-edge) and qdrant-client (local mode standing in for a Qdrant server).

Vectors are synthetic: three well-separated clusters, so the expected neighbours are known."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from vitrine.common.errors import ServiceError
from vitrine.launcher import free_port
from vitrine.search.store import (
    MAX_IDS_DROPPED_AFTER,
    TAG_TERMS_FIELD,
    AsyncStore,
    Conditions,
    DimensionMismatch,
    EmbeddedStore,
    OutdatedCollection,
    ServerStore,
    SparseVector,
    StoredPoint,
    StoreError,
    VectorStore,
    point_id,
    point_key,
)

DIMS = {"text": 16, "image": 8}
CLUSTERS = 3
PER_CLUSTER = 12
ARTISTS = ["Turner", "Blake", "Constable"]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _centres(dim: int, seed: int) -> np.ndarray:
    return _unit(np.random.default_rng(seed).normal(size=(CLUSTERS, dim)))


TEXT_CENTRES = _centres(DIMS["text"], 1)
IMAGE_CENTRES = _centres(DIMS["image"], 2)


def make_points() -> list[StoredPoint]:
    """36 objects, cluster c by artist ARTISTS[c]; every third object has no image."""
    rng = np.random.default_rng(0)
    points = []
    for c in range(CLUSTERS):
        for j in range(PER_CLUSTER):
            n = c * PER_CLUSTER + j
            vectors = {"text": _unit(TEXT_CENTRES[c] + 0.1 * rng.normal(size=DIMS["text"]))}
            has_image = n % 3 != 0
            if has_image:
                vectors["image"] = _unit(IMAGE_CENTRES[c] + 0.1 * rng.normal(size=DIMS["image"]))
            payload = {
                "title": f"Work {n}",
                "artist": ARTISTS[c],
                "year": 1800 + n,
                "medium": "Oil paint on canvas" if n % 2 else "Watercolour on paper",
                "classification": "painting",
                "subjects": ["sea", "ship"] if c == 0 else ["tree"],
                "has_image": has_image,
            }
            points.append(StoredPoint(f"T{n:05d}", vectors, payload))
    return points


# A factory gives a fresh store object over the same data each call (to test reopening).
StoreFactory = Callable[[], VectorStore]


@pytest.fixture(params=["embedded", "server"])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    opened: list[VectorStore] = []

    def make() -> VectorStore:
        for s in opened:
            s.close()
        opened.clear()
        if request.param == "embedded":
            store: VectorStore = EmbeddedStore(tmp_path / "data", "objects")
        else:
            store = ServerStore("", "objects", path=str(tmp_path / "qdrant-local"))
        opened.append(store)
        return store

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(factory: StoreFactory) -> VectorStore:
    s = factory()
    s.ensure_collection(DIMS)
    s.upsert(make_points())
    return s


def test_point_ids_are_stable_uuids() -> None:
    assert point_id("T05010") == point_id("T05010")
    assert point_id("T05010") != point_id("T05011")


def test_get_returns_payload_and_vectors(store: VectorStore) -> None:
    points = {p.id: p for p in make_points()}
    got = store.get(["T00001", "T00003", "missing"], with_vectors=True)
    assert set(got) == {"T00001", "T00003"}
    one = got["T00001"]
    assert one.payload["artist"] == "Turner"
    assert one.payload["subjects"] == ["sea", "ship"]
    assert one.payload["museum_id"] == "T00001"
    assert set(one.vectors) == {"text", "image"}
    np.testing.assert_allclose(one.vectors["text"], points["T00001"].vectors["text"], atol=1e-5)
    assert set(got["T00003"].vectors) == {"text"}  # no image: no image vector


def test_get_limits_payload_fields(store: VectorStore) -> None:
    got = store.get(["T00001"], payload_fields=["year"])
    assert got["T00001"].payload == {"year": 1801}
    assert got["T00001"].vectors == {}
    assert store.get_vectors(["T00002"])["T00002"].keys() == {"text", "image"}


def test_upsert_replaces_by_id(store: VectorStore) -> None:
    replacement = StoredPoint("T00001", {"text": TEXT_CENTRES[2]}, {"title": "Changed", "has_image": False})
    store.upsert([replacement])
    assert store.count() == CLUSTERS * PER_CLUSTER
    got = store.get(["T00001"], with_vectors=True)["T00001"]
    assert got.payload["title"] == "Changed"
    assert "artist" not in got.payload  # the payload is replaced, not merged
    assert set(got.vectors) == {"text"}  # and so are the vectors


def test_scroll_pages_through_every_point_once_in_a_stable_order(store: VectorStore) -> None:
    def scroll_all(conditions: Conditions | None, limit: int) -> list[StoredPoint]:
        found, start = [], None
        while True:
            page, start = store.scroll(conditions, limit, start, ["title"])
            assert len(page) <= limit
            found += page
            if start is None:
                return found

    everything = scroll_all(None, 5)
    assert sorted(p.id for p in everything) == sorted(p.id for p in make_points())
    assert [p.id for p in scroll_all(None, 7)] == [p.id for p in everything]  # same order, any page size
    assert all(set(p.payload) <= {"title"} for p in everything)
    blake = scroll_all(Conditions(artists=("Blake",)), 5)
    assert len(blake) == 12 and {p.id for p in blake} < {p.id for p in everything}
    assert store.scroll(Conditions(classifications=("sculpture",)), 5, None, None) == ([], None)


def test_count_with_conditions(store: VectorStore) -> None:
    assert store.count() == 36
    assert store.count(Conditions(artists=("Blake",))) == 12
    assert store.count(Conditions(artists=("Blake", "Turner"))) == 24
    assert store.count(Conditions(has_image=True)) == 24
    assert store.count(Conditions(has_image=False)) == 12
    assert store.count(Conditions(year_from=1810, year_to=1819)) == 10
    assert store.count(Conditions(year_from=1830)) == 6
    assert store.count(Conditions(tags=("ship", "nothing"))) == 12
    assert store.count(Conditions(mediums=("Oil paint on canvas",), artists=("Turner",))) == 6
    assert store.count(Conditions(classifications=("sculpture",))) == 0


def test_query_finds_the_cluster(store: VectorStore) -> None:
    hits = store.query("text", TEXT_CENTRES[1], limit=PER_CLUSTER)
    assert len(hits) == PER_CLUSTER
    assert {h.payload["artist"] for h in hits} == {"Blake"}
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > 0.9


def test_image_query_skips_objects_without_image(store: VectorStore) -> None:
    hits = store.query("image", IMAGE_CENTRES[0], limit=100)
    assert len(hits) == 24
    assert all(h.payload["has_image"] for h in hits)
    assert {h.payload["artist"] for h in hits[:8]} == {"Turner"}


def test_query_filter_exclusion_and_paging(store: VectorStore) -> None:
    everything = store.query("text", TEXT_CENTRES[0], limit=100)
    ids = [h.id for h in everything]
    assert len(ids) == 36
    page2 = store.query("text", TEXT_CENTRES[0], limit=5, offset=5)
    assert [h.id for h in page2] == ids[5:10]

    excluded = store.query("text", TEXT_CENTRES[0], limit=5, exclude_ids=ids[:3])
    assert [h.id for h in excluded] == ids[3:8]
    # A few excluded ids are dropped from a longer answer, many are a filter in the engine: the
    # same answers either way, with point keys too.
    many = [*ids[:3], *(f"absent-{n}" for n in range(MAX_IDS_DROPPED_AFTER))]
    assert [h.id for h in store.query("text", TEXT_CENTRES[0], limit=5, exclude_ids=many)] == ids[3:8]
    keys = store.query("text", TEXT_CENTRES[0], limit=5, exclude_ids=ids[:3], keys_only=True)
    assert [h.id for h in keys] == [point_key(i) for i in ids[3:8]]
    assert [h.id for h in store.query("text", TEXT_CENTRES[0], limit=5, offset=2, exclude_ids=ids[:3])] == ids[5:10]
    # Approximate (int8 where the index has it) finds the same cluster.
    approximate = store.query("text", TEXT_CENTRES[0], limit=PER_CLUSTER, approximate=True)
    assert {h.payload["artist"] for h in approximate} == {"Turner"}

    filtered = store.query(
        "text", TEXT_CENTRES[0], limit=100, conditions=Conditions(artists=("Blake",), has_image=True)
    )
    assert len(filtered) == 8
    assert all(h.payload["artist"] == "Blake" and h.payload["has_image"] for h in filtered)


def test_recommend_best_score_follows_likes_and_excludes_examples(store: VectorStore) -> None:
    points = {p.id: p for p in make_points()}
    liked = ["T00013", "T00014"]  # Blake's cluster (both have images)
    disliked = ["T00001"]  # Turner's
    positives = np.stack([points[i].vectors["text"] for i in liked])
    negatives = np.stack([points[i].vectors["text"] for i in disliked])
    hits = store.recommend("text", positives, negatives, limit=8, exclude_ids=[*liked, *disliked])
    assert len(hits) == 8
    assert {h.payload["artist"] for h in hits} == {"Blake"}
    assert not {h.id for h in hits} & {*liked, *disliked}
    seen = [*liked, *disliked, *(h.id for h in hits[:4]), *(f"absent-{n}" for n in range(MAX_IDS_DROPPED_AFTER))]
    unseen = store.recommend("text", positives, negatives, limit=4, exclude_ids=seen)
    assert [h.id for h in unseen] == [h.id for h in hits[4:8]]
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)

    filtered = store.recommend(
        "image",
        np.stack([points[i].vectors["image"] for i in liked]),
        np.zeros((0, DIMS["image"])),
        limit=50,
        conditions=Conditions(artists=("Turner",)),
    )
    assert filtered and all(h.payload["artist"] == "Turner" and h.payload["has_image"] for h in filtered)
    assert store.recommend("text", np.zeros((0, DIMS["text"])), negatives, limit=5) == []


def test_delete_is_idempotent(store: VectorStore) -> None:
    assert store.delete(["T00001", "T00002", "missing"]) == 2
    assert store.delete(["T00001"]) == 0
    assert store.count() == 34
    assert store.get(["T00001"]) == {}
    assert "T00001" not in [h.id for h in store.query("text", TEXT_CENTRES[0], limit=100)]


def test_upsert_rejects_bad_points(store: VectorStore) -> None:
    with pytest.raises(DimensionMismatch):
        store.upsert([StoredPoint("X", {"text": np.ones(5)}, {})])
    with pytest.raises(StoreError, match="unknown vector"):
        store.upsert([StoredPoint("X", {"sound": np.ones(5)}, {})])
    with pytest.raises(StoreError, match="twice"):
        store.upsert([StoredPoint("X", {"text": np.ones(16)}), StoredPoint("X", {"text": np.ones(16)})])
    with pytest.raises(StoreError, match="no vector"):
        store.upsert([StoredPoint("X", {}, {})])
    with pytest.raises(DimensionMismatch):
        store.query("text", np.ones(3), limit=3)


def test_reopen_keeps_data_and_detects_dimension_mismatch(store: VectorStore, factory: StoreFactory) -> None:
    reopened = factory()
    assert reopened.stored_dimensions() == DIMS
    with pytest.raises(DimensionMismatch, match="models changed"):
        reopened.ensure_collection({"text": 16, "image": 512})
    reopened.ensure_collection(DIMS)
    assert reopened.count() == 36
    assert reopened.count(Conditions(has_image=True)) == 24  # indexes survive too


def test_operations_need_an_open_collection(factory: StoreFactory) -> None:
    store = factory()
    assert store.stored_dimensions() is None
    with pytest.raises(StoreError, match="ensure_collection"):
        store.count()
    with pytest.raises(StoreError, match="'text'"):
        store.ensure_collection({"image": 8})


async def test_async_store(factory: StoreFactory) -> None:
    store = AsyncStore(factory())
    await store.ensure_collection(DIMS)
    await store.upsert(make_points()[:5])
    assert await store.count() == 5
    hits = await store.query("text", TEXT_CENTRES[0], limit=2, exclude_ids=["T00000"])
    assert "T00000" not in [h.id for h in hits]
    assert set(await store.get(["T00001"])) == {"T00001"}
    assert set((await store.get_vectors(["T00001"]))["T00001"]) == {"text", "image"}
    assert await store.delete(["T00001"]) == 1
    await store.close()


async def test_a_qdrant_server_that_goes_away_is_unavailable_and_nothing_is_half_written(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient

    server = ServerStore("", "objects", path=str(tmp_path / "qdrant-local"))
    store = AsyncStore(server)
    await store.ensure_collection(DIMS)
    await store.upsert(make_points()[:5])
    reachable = server._client
    # The server stops answering: a client for an address where nothing listens.
    server._client = QdrantClient(url=f"http://127.0.0.1:{free_port()}", timeout=2, check_compatibility=False)
    for call in (
        store.upsert(make_points()[5:10]),
        store.query("text", TEXT_CENTRES[0], limit=2),
        store.sparse_query("keywords", SparseVector((1,), (1.0,)), limit=2),
        store.delete(["T00001"]),
    ):
        with pytest.raises(ServiceError) as refused:
            await call
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE
        assert refused.value.message.startswith("the vector store is unavailable") and "retry" in refused.value.message
    server._client.close()
    server._client = reachable  # back again
    assert await store.count() == 5
    assert set(await store.get([f"T{n:05d}" for n in range(10)])) == {f"T{n:05d}" for n in range(5)}
    await store.close()


def test_embedded_store_is_one_process_per_folder(tmp_path: Path) -> None:
    first = EmbeddedStore(tmp_path, "objects")
    first.ensure_collection(DIMS)
    second = EmbeddedStore(tmp_path, "objects")
    with pytest.raises(StoreError, match="in use"):
        second.ensure_collection(DIMS)
    first.close()


# ----------------------------------------------------------------------------------------------
# Sparse keyword vectors
# ----------------------------------------------------------------------------------------------

TERMS = {"sea": 1, "ship": 2, "tree": 3, "turner": 4, "rare": 5}


def sparse(**weights: float) -> SparseVector:
    return SparseVector.from_dict({TERMS[t]: w for t, w in weights.items()})


def with_keywords(points: list[StoredPoint]) -> list[StoredPoint]:
    """The test points with a `keywords` vector: cluster 0 has sea and ship, the others tree;
    Turner's works (cluster 0) also "turner"; T00005 alone has "rare"."""
    for n, p in enumerate(points):
        terms = {"sea": 1.0, "ship": 1.0 + (n % 3), "turner": 1.0} if p.payload["artist"] == "Turner" else {"tree": 1.0}
        if n == 5:
            terms["rare"] = 1.0
        p.vectors["keywords"] = sparse(**terms)
        if n % 2:
            p.vectors["ngrams"] = sparse(sea=1.0)
    return points


@pytest.fixture
def keyword_store(factory: StoreFactory) -> VectorStore:
    s = factory()
    s.ensure_collection(DIMS)
    s.upsert(with_keywords(make_points()))
    return s


def test_sparse_vectors_round_trip(keyword_store: VectorStore) -> None:
    got = keyword_store.get(["T00005", "T00020"], with_sparse=True)
    assert got["T00005"].vectors["keywords"] == sparse(sea=1.0, ship=3.0, turner=1.0, rare=1.0)
    assert got["T00005"].vectors["ngrams"] == sparse(sea=1.0)
    assert set(got["T00020"].vectors) == {"keywords"}  # sparse only: no dense vector asked for
    # Dense vectors alone unless sparse ones are asked for (GetObject lists dense vectors).
    assert set(keyword_store.get(["T00005"], with_vectors=True)["T00005"].vectors) == {"text", "image"}
    assert set(keyword_store.get_vectors(["T00005"])["T00005"]) == {"text", "image"}


def test_keys_only_queries_then_vectors_and_payload_by_key(keyword_store: VectorStore) -> None:
    hits = keyword_store.sparse_query("keywords", sparse(rare=1.0, ship=1.0), limit=3, keys_only=True)
    key = point_key("T00005")
    assert hits[0].id == key and hits[0].payload == {}  # no payload read
    vectors = keyword_store.sparse_vectors([h.id for h in hits] + [point_key("no-such-id")], "ngrams")
    assert vectors[key] == sparse(sea=1.0) and point_key("no-such-id") not in vectors
    assert keyword_store.sparse_vectors([key], "keywords")[key] == sparse(sea=1.0, ship=3.0, turner=1.0, rare=1.0)
    page = keyword_store.get_by_keys([key])
    assert page[key].id == "T00005" and page[key].payload["artist"] == "Turner"
    dense = keyword_store.query("text", keyword_store.get_vectors(["T00005"])["T00005"]["text"], 1, keys_only=True)
    assert dense[0].id == key
    with pytest.raises(StoreError, match="unknown sparse vector"):
        keyword_store.sparse_vectors([key], "text")


def test_sparse_query_scores_with_idf(keyword_store: VectorStore) -> None:
    hits = keyword_store.sparse_query("keywords", sparse(ship=1.0, rare=1.0), limit=100)
    # Only objects sharing a term; "rare" (1 object of 36) weighs far more than "ship" (12).
    assert len(hits) == 12 and {h.payload["artist"] for h in hits} == {"Turner"}
    assert hits[0].id == "T00005"
    idf = {n: math.log(1 + (36 - n + 0.5) / (n + 0.5)) for n in (1, 12)}
    assert hits[0].score == pytest.approx(3.0 * idf[12] + idf[1], rel=1e-4)
    # Then by the stored weight of "ship" (3, 2, 1 in turn).
    assert [round(h.score / idf[12], 3) for h in hits[1:]] == sorted([3.0] * 3 + [2.0] * 4 + [1.0] * 4, reverse=True)
    assert keyword_store.sparse_query("keywords", sparse(tree=1.0), limit=5)[0].payload["artist"] != "Turner"


def test_sparse_query_filters_excludes_and_limits(keyword_store: VectorStore) -> None:
    query = sparse(sea=1.0, tree=1.0)
    assert len(keyword_store.sparse_query("keywords", query, limit=100)) == 36
    assert len(keyword_store.sparse_query("keywords", query, limit=7)) == 7
    filtered = keyword_store.sparse_query("keywords", query, limit=100, conditions=Conditions(artists=("Blake",)))
    assert len(filtered) == 12 and {h.payload["artist"] for h in filtered} == {"Blake"}
    excluded = keyword_store.sparse_query("keywords", sparse(rare=1.0, ship=1.0), limit=3, exclude_ids=["T00005"])
    assert "T00005" not in [h.id for h in excluded] and len(excluded) == 3
    assert len(keyword_store.sparse_query("ngrams", sparse(sea=1.0), limit=100)) == 18
    assert keyword_store.sparse_query("keywords", SparseVector((), ()), limit=5) == []
    assert keyword_store.sparse_query("keywords", SparseVector((99,), (1.0,)), limit=5) == []


def test_a_query_can_ask_for_a_share_of_given_tag_terms(keyword_store: VectorStore) -> None:
    # The tags signal's coverage rule: objects whose `tag_terms` hold at least min_tag_terms of
    # the given ids. Object n carries the terms n % 4 and 10 + n % 3.
    keyword_store.upsert(
        [
            StoredPoint(p.id, p.vectors, {**p.payload, TAG_TERMS_FIELD: [n % 4, 10 + n % 3]})
            for n, p in enumerate(with_keywords(make_points()))
        ]
    )
    query = sparse(sea=1.0, tree=1.0)

    def hits(terms: tuple[int, ...], need: int) -> set[int]:
        found = keyword_store.sparse_query(
            "keywords", query, limit=100, conditions=Conditions(tag_terms=terms, min_tag_terms=need)
        )
        return {int(h.id[1:]) for h in found}

    everyone = set(range(CLUSTERS * PER_CLUSTER))
    assert hits((0, 10), 1) == {n for n in everyone if n % 4 == 0 or n % 3 == 0}
    assert hits((0, 10), 2) == {n for n in everyone if n % 4 == 0 and n % 3 == 0}
    assert hits((1, 2, 11), 2) == {n for n in everyone if n % 4 in (1, 2) and n % 3 == 1}
    assert hits((7, 8, 9), 1) == set()
    # With the other conditions: all must hold.
    blake = keyword_store.sparse_query(
        "keywords", query, limit=100, conditions=Conditions(artists=("Blake",), tag_terms=(0,), min_tag_terms=1)
    )
    assert {int(h.id[1:]) for h in blake} == {n for n in range(12, 24) if n % 4 == 0}


def test_sparse_vectors_are_replaced_and_deleted_with_the_point(keyword_store: VectorStore) -> None:
    keyword_store.upsert([StoredPoint("T00005", {"text": TEXT_CENTRES[0]}, {"artist": "Turner", "has_image": False})])
    assert "T00005" not in [h.id for h in keyword_store.sparse_query("keywords", sparse(rare=1.0), limit=5)]
    keyword_store.delete(["T00001"])
    assert "T00001" not in [h.id for h in keyword_store.sparse_query("keywords", sparse(sea=1.0), limit=100)]


def test_bad_sparse_vectors_are_refused(keyword_store: VectorStore) -> None:
    text = {"text": np.ones(16)}
    cases = [
        ({**text, "keywords": np.ones(3)}, "SparseVector"),
        ({**text, "keywords": SparseVector((1, 1), (1.0, 2.0))}, "repeated"),
        ({**text, "keywords": SparseVector((1, 2), (1.0,))}, "values"),
        ({**text, "keywords": SparseVector((-1,), (1.0,))}, "outside"),
        ({**text, "ngrams": SparseVector((1,), (float("nan"),))}, "finite"),
        ({**text, "sounds": SparseVector((1,), (1.0,))}, "unknown vector"),
    ]
    for vectors, fragment in cases:
        with pytest.raises(StoreError, match=fragment):
            keyword_store.upsert([StoredPoint("X", vectors, {})])
    with pytest.raises(StoreError, match="unknown sparse vector"):
        keyword_store.sparse_query("text", sparse(sea=1.0), limit=3)


def test_sparse_vectors_survive_reopening(keyword_store: VectorStore, factory: StoreFactory) -> None:
    reopened = factory()
    reopened.ensure_collection(DIMS)
    assert reopened.sparse_query("keywords", sparse(rare=1.0), limit=3)[0].id == "T00005"


def test_a_collection_without_sparse_vectors_asks_for_a_reingest(tmp_path: Path) -> None:
    """Collections made before keyword search (dense vectors only) are refused with what to do."""
    import qdrant_edge as qe
    from qdrant_client import QdrantClient, models

    qe.EdgeShard.create(
        str(tmp_path / "edge" / "old"),
        qe.EdgeConfig(
            vectors={n: qe.EdgeVectorParams(size=s, distance=qe.Distance.Cosine) for n, s in DIMS.items()},
            wal_enabled=True,
        ),
    ).close()
    client = QdrantClient(path=str(tmp_path / "local"))
    client.create_collection(
        "old",
        vectors_config={n: models.VectorParams(size=s, distance=models.Distance.COSINE) for n, s in DIMS.items()},
    )
    client.close()
    for store in (EmbeddedStore(tmp_path / "edge", "old"), ServerStore("", "old", path=str(tmp_path / "local"))):
        with pytest.raises(OutdatedCollection, match=r"older Vitrine.*keywords, ngrams.*re-ingest"):
            store.ensure_collection(DIMS)
        with pytest.raises(OutdatedCollection):
            store.stored_dimensions()
        store.close()


# ----------------------------------------------------------------------------------------------
# HNSW builds on a copy, swapped in (embedded store only)
# ----------------------------------------------------------------------------------------------


def test_an_index_built_on_a_copy_is_swapped_in_with_the_writes_made_meanwhile(tmp_path: Path) -> None:
    """(The engine indexes segments of some megabytes only, so these few points stay unindexed:
    `make bench` checks the HNSW at 100k; here the copy, the replay and the swap are checked.)"""
    from vitrine.search.indexing import build_copy

    store = EmbeddedStore(tmp_path, "objects")
    store.ensure_collection(DIMS)
    points = make_points()
    store.upsert(points[:30])
    copy, copied = store.copy_for_index_build()
    assert copy == tmp_path / "objects.build" and copied == 30
    # Writes while the copy is indexed: they must survive the swap.
    store.upsert(points[30:])
    store.delete(["T00000"])
    changed = StoredPoint("T00001", points[1].vectors, {**points[1].payload, "title": "Renamed"})
    store.upsert([changed])
    build_copy(str(tmp_path), copy.name)  # what the child process runs
    assert store.swap_in() == 3
    assert store.count() == len(points) - 1
    assert "T00000" not in store.get(["T00000"])
    assert store.get(["T00001"])["T00001"].payload["title"] == "Renamed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["objects"]  # no copy or old folder left
    assert store.query("text", TEXT_CENTRES[2], limit=3)[0].payload["artist"] == ARTISTS[2]
    store.close()
    reopened = EmbeddedStore(tmp_path, "objects")
    reopened.ensure_collection(DIMS)
    assert reopened.count() == len(points) - 1
    reopened.close()


@pytest.mark.parametrize("finished", [False, True])
def test_a_swap_cut_short_by_a_crash_is_undone_or_finished_on_open(tmp_path: Path, finished: bool) -> None:
    """A crash after the old folder was moved aside: without the 'swapped' mark the new folder may
    lack replayed writes, so the old one comes back; with it the old one is dropped."""
    store = EmbeddedStore(tmp_path, "objects")
    store.ensure_collection(DIMS)
    store.upsert(make_points()[:5])
    store.close()
    (tmp_path / "objects").rename(tmp_path / "objects.old")
    (tmp_path / "objects").mkdir()  # stands for the copy, swapped in but not replayed
    (tmp_path / "objects.build").mkdir()  # an abandoned build
    if finished:
        (tmp_path / "objects.swapped").touch()
        # A finished swap's folder is a whole store: make it one.
        (tmp_path / "objects").rmdir()
        EmbeddedStore(tmp_path, "done").ensure_collection(DIMS)
        (tmp_path / "done").rename(tmp_path / "objects")
    recovered = EmbeddedStore(tmp_path, "objects")
    recovered.ensure_collection(DIMS)
    assert recovered.count() == (0 if finished else 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["objects"]
    recovered.close()


def test_make_run_sets_an_outdated_demo_store_aside(tmp_path: Path) -> None:
    import qdrant_edge as qe

    from vitrine.cli import set_aside_outdated_store

    data_dir = tmp_path / "search"
    sparse = {n: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf) for n in ("keywords", "ngrams")}  # no tags
    vectors = {n: qe.EdgeVectorParams(size=s, distance=qe.Distance.Cosine) for n, s in DIMS.items()}
    qe.EdgeShard.create(
        str(data_dir / "vitrine"), qe.EdgeConfig(vectors=vectors, sparse_vectors=sparse, wal_enabled=True)
    ).close()
    aside = set_aside_outdated_store(data_dir, "vitrine")
    assert aside is not None and (aside / "vitrine" / "edge_config.json").exists() and not data_dir.exists()
    current = EmbeddedStore(data_dir, "vitrine")
    current.ensure_collection(DIMS)
    current.close()
    assert set_aside_outdated_store(data_dir, "vitrine") is None  # a current store stays
    assert set_aside_outdated_store(data_dir, "vitrine", dict(DIMS)) is None
    assert set_aside_outdated_store(tmp_path / "none", "vitrine") is None
    # The image model now gives vectors of another size: that store goes aside too.
    other = {**DIMS, "image": DIMS["image"] + 80}
    aside = set_aside_outdated_store(data_dir, "vitrine", other)
    assert aside is not None and not data_dir.exists()
