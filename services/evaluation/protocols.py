"""The search evaluation's protocols, through the search service's own RPCs (issue #13): ingest
through UpsertObjects and a GetObject check that nothing stored carries a subject; each query
through Search with a method's signal weights, retried on transient failures and degraded
answers; Recommend quality as the share of the top RECOMMEND_K in the liked objects' group."""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import numpy as np

from vitrine.common import channels
from vitrine.common.records import load_records
from vitrine.evaluation.errors import EvalError
from vitrine.evaluation.metrics import RECALL_K, mean, ndcg_at, recall_at
from vitrine.evaluation.queries import SUBJECT_FIELDS, Collection, Query
from vitrine.search.ingest import IngestSummary, ingest
from vitrine.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc, search_pb2, search_pb2_grpc

RECOMMEND_K = 12
LIKES = 3
TRIALS = 5
ARTIST_MIN = 4
CENTURY_MEDIUM_MIN = 12
# Search calls: a generous deadline (a slow answer is still the system's answer), retried on
# transient failures and on degraded answers.
SEARCH_TIMEOUT_S = 600.0
ATTEMPTS = 3
TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}

# Method -> signal_weights of the Search request ({} = the server's own fusion).
SEARCH_METHODS: dict[str, dict[str, float]] = {
    "fused": {},
    "text": {"text": 1.0, "keyword": 0.0, "image": 0.0, "tags": 0.0},
    "keyword": {"text": 0.0, "keyword": 1.0, "image": 0.0, "tags": 0.0},
    "image": {"text": 0.0, "keyword": 0.0, "image": 1.0, "tags": 0.0},
    "tags": {"text": 0.0, "keyword": 0.0, "image": 0.0, "tags": 1.0},
}
SIGNAL_NAMES = {
    search_pb2.SIGNAL_IMAGE: "image",
    search_pb2.SIGNAL_TEXT: "text",
    search_pb2.SIGNAL_KEYWORD: "keyword",
    search_pb2.SIGNAL_VISUAL: "visual",
    search_pb2.SIGNAL_TAGS: "tags",
}

T = TypeVar("T")


async def list_models(address: str) -> embedder_pb2.ListModelsResponse:
    async with channels.open_channel(address) as channel:
        stub = embedder_pb2_grpc.EmbedderServiceStub(channel)
        return await stub.ListModels(embedder_pb2.ListModelsRequest(), timeout=30)


async def _bounded(call: Callable[..., Awaitable[T]], items: Iterable[Any], concurrency: int) -> list[T]:
    """`call(item)` for every item, at most `concurrency` in flight; results in order. A
    coroutine is made only when its turn comes (nothing is left un-awaited on Ctrl-C)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(item: Any) -> T:
        async with gate:
            return await call(item)

    return await asyncio.gather(*(one(i) for i in items))


async def ingest_collection(address: str, collection: Collection, args: argparse.Namespace) -> IngestSummary:
    """Through the ordinary ingest path (UpsertObjects), the rows without their subjects."""
    loaded = load_records(collection.path, rows=collection.rows)
    return await ingest(
        loaded,
        address,
        batch_size=args.batch_size,
        total=len(collection.rows),
        concurrency=args.concurrency,
        progress=not args.quiet,
        wait_s=60.0,
        description=collection.path.name,
    )


@dataclass
class StoreCheck:
    present: list[str] = field(default_factory=list)
    with_image: list[str] = field(default_factory=list)
    with_subjects: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {
            "objects": len(self.present),
            "objects_with_image": len(self.with_image),
            "objects_with_subjects": len(self.with_subjects),
        }


async def check_store(stub: search_pb2_grpc.SearchServiceStub, ids: Sequence[str], concurrency: int = 8) -> StoreCheck:
    """GetObject on every id: which are stored, which have an image vector, and that none carries
    a subject (neither the field nor a `subject_paths` extra)."""

    async def get(museum_id: str) -> search_pb2.GetObjectResponse | None:
        try:
            return await stub.GetObject(search_pb2.GetObjectRequest(id=museum_id), timeout=SEARCH_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    check = StoreCheck()
    for museum_id, answer in zip(ids, await _bounded(get, ids, concurrency), strict=True):
        if answer is None:
            continue
        check.present.append(museum_id)
        if "image" in answer.vectors:
            check.with_image.append(museum_id)
        if answer.object.subjects or any(f in answer.object.extra for f in SUBJECT_FIELDS):
            check.with_subjects.append(museum_id)
    return check


@dataclass
class MethodRun:
    """One method's answers: each query's ranked ids (top 100) and how the answers came."""

    results: list[list[str]]
    # Signal name -> hits it contributed to.
    signals: Counter[str]
    # Signals the service reported unavailable in any answer.
    unavailable: set[str]
    # Answers still missing a signal the method asks for after the retries (the service answers
    # from keywords alone while the embedder does not respond in time).
    degraded: int
    retries: int
    latencies_s: list[float]


async def run_method(
    stub: search_pb2_grpc.SearchServiceStub,
    queries: Sequence[Query],
    weights: Mapping[str, float],
    concurrency: int,
    dense: Iterable[str] = ("text",),
    timeout_s: float = SEARCH_TIMEOUT_S,
) -> MethodRun:
    """Each query through the Search RPC with these `signal_weights`. A call that fails with a
    transient status, or an answer missing one of the `dense` signals the weights ask for
    (degraded), is tried again (ATTEMPTS in all): the figures are the system's, not an overloaded
    machine's."""
    wanted = {s for s in dense if weights.get(s, 1.0) > 0}
    run = MethodRun([], Counter(), set(), 0, 0, [])

    async def one(query: Query) -> list[str]:
        request = search_pb2.SearchRequest(
            query=query.query, page=common_pb2.PageRequest(page_size=RECALL_K), signal_weights=dict(weights)
        )
        for attempt in range(1, ATTEMPTS + 1):
            clock = time.perf_counter()
            try:
                answer = await stub.Search(request, timeout=timeout_s)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in TRANSIENT or attempt == ATTEMPTS:
                    raise EvalError(
                        f"Search {query.query!r} failed: {exc.code().name}: {exc.details()} (attempt {attempt})"
                    ) from exc
                run.retries += 1
                await asyncio.sleep(2.0 * attempt)
                continue
            run.latencies_s.append(time.perf_counter() - clock)
            missing = wanted.intersection(SIGNAL_NAMES.get(s, "") for s in answer.unavailable_signals)
            if missing and attempt < ATTEMPTS:
                run.retries += 1
                await asyncio.sleep(2.0 * attempt)
                continue
            run.degraded += bool(missing)
            for hit in answer.hits:
                run.signals.update(SIGNAL_NAMES.get(s.signal, str(s.signal)) for s in hit.signals)
            run.unavailable.update(SIGNAL_NAMES.get(s, str(s)) for s in answer.unavailable_signals)
            return [hit.object.id for hit in answer.hits]
        raise AssertionError("unreachable")

    run.results = await _bounded(one, queries, concurrency)
    return run


def _trial_rng(seed: int, kind: str, group: str, trial: int) -> random.Random:
    return random.Random(f"{seed}/{kind}/{group}/{trial}")


async def recommend_quality(
    stub: search_pb2_grpc.SearchServiceStub,
    groups: Mapping[str, Sequence[str]],
    pool: Sequence[str],
    space: int,
    kind: str,
    seed: int,
    concurrency: int,
) -> dict[str, Any]:
    """The protocol of issue #13: per group, TRIALS seeded trials; like LIKES random members,
    score the share of the top RECOMMEND_K that are in the group; macro-average over groups.
    Best-score (the service's default) and mean strategies through the Recommend RPC; random:
    RECOMMEND_K objects drawn from the rest of the pool."""
    pool_sorted = sorted(pool)
    strategies = {
        "best_score": search_pb2.RECOMMEND_STRATEGY_BEST_SCORE,
        "mean": search_pb2.RECOMMEND_STRATEGY_MEAN,
    }

    async def trial(group: str, members: Sequence[str], n: int) -> dict[str, float]:
        rng = _trial_rng(seed, kind, group, n)
        liked = rng.sample(sorted(members), LIKES)
        liked_set = set(liked)
        rest = [i for i in pool_sorted if i not in liked_set]
        random_pick = rng.sample(rest, min(RECOMMEND_K, len(rest)))
        member_set = set(members)
        shares = {"random": sum(i in member_set for i in random_pick) / RECOMMEND_K}
        for name, strategy in strategies.items():
            answer = await stub.Recommend(
                search_pb2.RecommendRequest(liked_ids=liked, k=RECOMMEND_K, strategy=strategy, space=space),
                timeout=SEARCH_TIMEOUT_S,
            )
            shares[name] = sum(h.object.id in member_set for h in answer.hits) / RECOMMEND_K
        return shares

    names = sorted(groups)
    runs = [(g, n) for g in names for n in range(TRIALS)]
    results = await _bounded(lambda run: trial(run[0], groups[run[0]], run[1]), runs, concurrency)
    per_group: dict[str, dict[str, float]] = {}
    for index, group in enumerate(names):
        rows = results[index * TRIALS : (index + 1) * TRIALS]
        per_group[group] = {key: float(np.mean([r[key] for r in rows])) for key in ("best_score", "mean", "random")}
    out: dict[str, Any] = {key: mean([g[key] for g in per_group.values()]) for key in ("best_score", "mean", "random")}
    sizes = [len(m) for m in groups.values()]
    out.update(
        groups=len(names),
        group_sizes=[min(sizes, default=0), max(sizes, default=0)],
        pool=len(pool),
        trials=TRIALS,
        likes=LIKES,
        k=RECOMMEND_K,
    )
    return out


def subject_groups(collection: Collection, present: Sequence[str], max_groups: int, seed: int) -> dict[str, list[str]]:
    """Subject -> stored objects carrying it, for subjects with more objects than likes (a seeded
    sample of `max_groups` of them)."""
    members: dict[str, list[str]] = defaultdict(list)
    for museum_id in present:
        for term in collection.subjects.get(museum_id, []):
            members[term].append(museum_id)
    eligible = sorted(t for t, ids in members.items() if len(ids) > LIKES)
    chosen = random.Random(f"{seed}/subjects").sample(eligible, min(max_groups, len(eligible)))
    return {t: members[t] for t in sorted(chosen)}


def _is_known_artist(name: str) -> bool:
    return bool(name) and not name.lower().startswith(("unknown", "anonymous"))


def painting_groups(collection: Collection, pool: Sequence[str]) -> dict[str, dict[str, list[str]]]:
    """The protocol's groups among the paintings with an image vector: artists as catalogued with
    at least ARTIST_MIN paintings (not 'Unknown...' or empty), century + medium classes with at
    least CENTURY_MEDIUM_MIN."""
    artists: dict[str, list[str]] = defaultdict(list)
    classes: dict[str, list[str]] = defaultdict(list)
    for museum_id in pool:
        record = collection.records[museum_id]
        artist = str(record.get("artist") or "").strip()
        if _is_known_artist(artist):
            artists[artist].append(museum_id)
        century = record.get("century")
        medium = str(record.get("medium") or "").strip()
        if century not in (None, "") and medium:
            classes[f"{century} / {medium}"].append(museum_id)
    return {
        "artist": {a: ids for a, ids in artists.items() if len(ids) >= ARTIST_MIN},
        "century_medium": {c: ids for c, ids in classes.items() if len(ids) >= CENTURY_MEDIUM_MIN},
    }


def per_query(queries: Sequence[Query], ranked: Mapping[str, Sequence[Sequence[str]]]) -> Iterator[dict[str, Any]]:
    """Each query with each method's figures, number of hits and top 3 ids (per_query.jsonl)."""
    for n, q in enumerate(queries):
        yield q.to_json(
            methods={
                name: {
                    "ndcg@12": round(ndcg_at(results[n], q.relevant), 4),
                    "recall@100": round(recall_at(results[n], q.relevant), 4),
                    "hits": len(results[n]),
                    "top": list(results[n][:3]),
                }
                for name, results in ranked.items()
            }
        )
