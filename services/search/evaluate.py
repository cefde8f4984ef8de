"""`vitrine-search eval`: measure search and recommendation quality through the service's own RPCs.

    vitrine-search eval --data tate_dev.jsonl.gz [--queries queries.jsonl] --out DIR
                        [--embedder ADDRESS | --start-embedder] [--paintings DIR | --no-paintings]

What it does (issue #13):
1. Starts a search service of its own on a fresh temporary store (`vitrine.launcher`), pointed at
   the embedder at `--embedder` or at one it starts itself (`--start-embedder`).
2. Ingests the objects through the ordinary ingest path (UpsertObjects) *without* their
   curators' subjects (`subjects` and `subject_paths` are dropped from every record before it is
   read; the subjects are kept on this side only, as ground truth), then checks through GetObject
   that no stored object carries a subject.
3. Runs the queries through the Search RPC: `fused` (the server's default fusion), each signal
   alone (`signal_weights`, the others at 0) and, on this side, a TF-IDF keyword baseline over the
   same metadata text (`tfidf`, the prototype's method). Without `--queries` the queries are built
   from the subjects (terms and co-occurring pairs; typo variants swap two letters of one word)
   and written to DIR/queries.jsonl.
4. Recommend quality through the Recommend RPC: text side (like 3 objects sharing a subject, share
   of the next 12 that carry it) on the same store; image side (paintings: like 3 by one artist,
   or of one century and medium) on a second fresh store of all the paintings. Each against
   random picks and against the mean-vector strategy.
5. Writes DIR/metrics.json, DIR/metrics.md (also printed), DIR/per_query.jsonl and the service
   logs in DIR/logs; stops everything it started, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np

from vitrine.common import channels
from vitrine.launcher import ServiceProcess, start_service
from vitrine.search.ingest import IngestSummary, ingest, open_channel
from vitrine.search.records import RecordError, load_records, object_text, read_rows, record_to_object
from vitrine.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc, search_pb2, search_pb2_grpc

# Fields of a record that carry the curators' subjects: never sent to the service.
SUBJECT_FIELDS = ("subjects", "subject_paths")

NDCG_K = 12
RECALL_K = 100
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
METRIC_KEYS = ("ndcg@12", "recall@100", "zero_result_rate", "ndcg@12_typo", "zero_result_rate_typo")

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
# Bars of issue #13.
FUSED_OVER_TFIDF = 1.3
TYPO_OVER_CLEAN = 0.8
EFFICIENTNET_FIGURES = {"image_artist": 0.064, "image_century_medium": 0.243}


T = TypeVar("T")


class EvalError(RuntimeError):
    """The evaluation cannot go on (bad input, a service that does not start)."""


# ----------------------------------------------------------------------------------------------
# Collections and queries
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    query: str
    relevant: tuple[str, ...]
    typo_of: str | None = None

    def to_json(self, **more: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"query": self.query, "relevant": list(self.relevant)}
        if self.typo_of is not None:
            out["typo_of"] = self.typo_of
        return {**out, **more}


@dataclass
class Collection:
    """The objects of one records file as the evaluation sees them."""

    path: Path
    # The rows sent to the service: subjects removed.
    rows: list[tuple[int, dict[str, Any]]]
    # Museum id -> metadata text (what the text signal embeds and TF-IDF indexes), in file order.
    texts: dict[str, str]
    # Museum id -> curators' subjects (kept here as ground truth, never sent).
    subjects: dict[str, list[str]]
    # Museum id -> the raw record (for group definitions such as artist or century).
    records: dict[str, dict[str, Any]]

    @property
    def ids(self) -> list[str]:
        return list(self.texts)


def strip_subjects(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record without the curators' subjects."""
    return {k: v for k, v in record.items() if k not in SUBJECT_FIELDS}


def _subject_list(value: Any) -> list[str]:
    items = value if isinstance(value, list | tuple) else re.split(r"\s*[;|]\s*", str(value or ""))
    return list(dict.fromkeys(s for s in (str(i).strip() for i in items if i is not None) if s))


def spread(rows: Sequence[Any], n: int | None) -> list[Any]:
    """`n` rows spread evenly over `rows` (all when n is None or larger), in order."""
    if n is None or n >= len(rows):
        return list(rows)
    return [rows[(i * len(rows)) // n] for i in range(n)]


def read_collection(path: Path, limit: int | None = None) -> Collection:
    rows = [(number, row) for number, row in read_rows(path) if isinstance(row, dict)]
    rows = spread(rows, limit)
    kept: list[tuple[int, dict[str, Any]]] = []
    texts: dict[str, str] = {}
    subjects: dict[str, list[str]] = {}
    records: dict[str, dict[str, Any]] = {}
    for number, row in rows:
        stripped = strip_subjects(row)
        try:
            obj = record_to_object(stripped)
        except RecordError:
            continue  # the ingest skips it too (and says so)
        kept.append((number, stripped))
        if obj.id in texts:
            continue  # the ingest keeps the first record of an id
        texts[obj.id] = object_text(obj)
        subjects[obj.id] = _subject_list(row.get("subjects"))
        records[obj.id] = row
    if not texts:
        raise EvalError(f"{path}: no usable records")
    return Collection(path, kept, texts, subjects, records)


def make_typo(text: str, rng: random.Random) -> str | None:
    """`text` with two neighbouring letters of one word swapped ('harbour' -> 'hrabour'); None
    when no word can take a visible typo. Words of 4+ letters are preferred and keep their first
    letter; shorter ones are used only when there is nothing longer."""
    words = text.split(" ")

    def spots(word: str, keep_first: bool) -> list[int]:
        start = 1 if keep_first else 0
        return [
            i
            for i in range(start, len(word) - 1)
            if word[i].isalpha() and word[i + 1].isalpha() and word[i].lower() != word[i + 1].lower()
        ]

    for min_letters, keep_first in ((4, True), (2, False)):
        candidates = [
            (n, spots(w, keep_first))
            for n, w in enumerate(words)
            if sum(c.isalpha() for c in w) >= min_letters and spots(w, keep_first)
        ]
        if candidates:
            n, positions = rng.choice(candidates)
            i = rng.choice(positions)
            word = words[n]
            words[n] = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
            return " ".join(words)
    return None


def generate_queries(
    subjects: Mapping[str, Sequence[str]],
    max_queries: int = 300,
    seed: int = 0,
    min_relevant: int = 3,
    pair_share: float = 1 / 3,
) -> list[Query]:
    """Queries from the curators' subjects: single terms and pairs of co-occurring terms with at
    least `min_relevant` objects (relevant: the objects that carry them all), `max_queries`
    clean queries at most (about `pair_share` of them pairs), each followed by a typo variant.
    Deterministic for a seed."""
    by_subject: dict[str, set[str]] = defaultdict(set)
    by_pair: dict[tuple[str, str], set[str]] = defaultdict(set)
    for museum_id, terms in subjects.items():
        unique = sorted(set(terms))
        for term in unique:
            by_subject[term].add(museum_id)
        for pair in combinations(unique, 2):
            by_pair[pair].add(museum_id)
    singles = sorted(t for t, ids in by_subject.items() if len(ids) >= min_relevant)
    pairs = sorted(
        p
        for p, ids in by_pair.items()
        # A pair that always comes together is one of its terms again.
        if len(ids) >= min_relevant and ids != by_subject[p[0]] and ids != by_subject[p[1]]
    )
    rng = random.Random(seed)
    n_pairs = min(len(pairs), round(max_queries * pair_share))
    n_singles = min(len(singles), max_queries - n_pairs)
    n_pairs = min(len(pairs), max_queries - n_singles)
    chosen: list[tuple[str, set[str]]] = [(t, by_subject[t]) for t in rng.sample(singles, n_singles)]
    chosen += [(f"{a} {b}", by_pair[(a, b)]) for a, b in rng.sample(pairs, n_pairs)]
    queries: list[Query] = []
    seen: set[str] = set()
    for text, ids in chosen:
        if text.lower() in seen:
            continue
        seen.add(text.lower())
        clean = Query(text, tuple(sorted(ids)))
        queries.append(clean)
        typo = make_typo(text, rng)
        if typo is not None:
            queries.append(Query(typo, clean.relevant, typo_of=text))
    return queries


def read_queries(path: Path) -> list[Query]:
    """A queries file: one JSON object a line, {"query", "relevant", optional "typo_of"}; other
    fields are ignored."""
    queries: list[Query] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalError(f"{path}:{number}: invalid JSON ({exc.msg})") from exc
            query = row.get("query") if isinstance(row, dict) else None
            relevant = row.get("relevant", []) if isinstance(row, dict) else None
            if not isinstance(query, str) or not query.strip():
                raise EvalError(f'{path}:{number}: needs a "query" string')
            if not isinstance(relevant, list) or not all(isinstance(r, str | int) for r in relevant):
                raise EvalError(f'{path}:{number}: "relevant" must be a list of object ids')
            typo_of = row.get("typo_of")
            if typo_of is not None and not isinstance(typo_of, str):
                raise EvalError(f'{path}:{number}: "typo_of" must be the clean query (a string)')
            queries.append(Query(query.strip(), tuple(str(r) for r in relevant), typo_of or None))
    if not queries:
        raise EvalError(f"{path}: no queries")
    return queries


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------


def ndcg_at(ranked: Sequence[str], relevant: Iterable[str], k: int = NDCG_K) -> float:
    """Binary-relevance nDCG@k; the ideal ranking has min(|relevant|, k) relevant results."""
    relevant = set(relevant)
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(rank + 2) for rank, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return dcg / ideal


def recall_at(ranked: Sequence[str], relevant: Iterable[str], k: int = RECALL_K) -> float:
    relevant = set(relevant)
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def method_metrics(queries: Sequence[Query], results: Sequence[Sequence[str]]) -> dict[str, float | None]:
    """The five figures of one method: clean queries (no `typo_of`) and typo queries apart.
    A figure is None when there is no query of its kind."""
    clean = [(q, r) for q, r in zip(queries, results, strict=True) if q.typo_of is None]
    typo = [(q, r) for q, r in zip(queries, results, strict=True) if q.typo_of is not None]
    return {
        "ndcg@12": _mean([ndcg_at(r, q.relevant) for q, r in clean]),
        "recall@100": _mean([recall_at(r, q.relevant) for q, r in clean]),
        "zero_result_rate": _mean([float(not r) for _, r in clean]),
        "ndcg@12_typo": _mean([ndcg_at(r, q.relevant) for q, r in typo]),
        "zero_result_rate_typo": _mean([float(not r) for _, r in typo]),
    }


class TfidfBaseline:
    """The prototype's keyword search: scikit-learn TF-IDF over the metadata text, cosine
    similarity, top 100; an object is a result only when it shares a term with the query."""

    def __init__(self, texts: Mapping[str, str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.ids = list(texts)
        self.vectorizer = TfidfVectorizer()
        self.matrix = self.vectorizer.fit_transform([texts[i] for i in self.ids])  # rows l2-normalised

    def search(self, query: str, k: int = RECALL_K) -> list[str]:
        scores = (self.matrix @ self.vectorizer.transform([query]).T).toarray().ravel()
        found = np.flatnonzero(scores > 0)
        order = found[np.lexsort((found, -scores[found]))][:k]
        return [self.ids[i] for i in order]


# ----------------------------------------------------------------------------------------------
# Services
# ----------------------------------------------------------------------------------------------


class Services(contextlib.AbstractContextManager["Services"]):
    """The processes this evaluation starts; all stopped on exit (normal, error or Ctrl-C)."""

    def __init__(self, log_dir: Path, ready_timeout_s: float, quiet: bool) -> None:
        self.log_dir = log_dir
        self.ready_timeout_s = ready_timeout_s
        self.quiet = quiet
        self.started: list[ServiceProcess] = []
        self._tmp = contextlib.ExitStack()

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def _start(self, name: str, env: Mapping[str, str]) -> ServiceProcess:
        service = start_service(name, self.log_dir, {**os.environ, **env})
        self.started.append(service)
        try:
            service.wait_serving(self.ready_timeout_s)
        except (RuntimeError, TimeoutError) as exc:
            raise EvalError(str(exc)) from exc
        self._say(f"{name} SERVING on {service.address} (log {service.log_path})")
        return service

    def start_embedder(self, models: str) -> str:
        self._say(f"starting an embedder with {models} ...")
        env = {"VITRINE_EMBEDDER_MODELS": models, "VITRINE_EMBEDDER_HOST": "127.0.0.1"}
        return self._start("embedder", env).address

    def start_tagger(self, model_dir: Path, embedder: str) -> str:
        """A tagger serving the trained version in `model_dir`."""
        self._say(f"starting a tagger with {model_dir} ...")
        env = {
            "VITRINE_TAGGER_HOST": "127.0.0.1",
            "VITRINE_TAGGER_MODEL_DIR": str(model_dir.parent),
            "VITRINE_TAGGER_MODEL_VERSION": model_dir.name,
            "VITRINE_TAGGER_EMBEDDER_ADDRESS": embedder,
            # Its own feedback database: nobody's curators' decisions change what it suggests.
            "VITRINE_TAGGER_FEEDBACK_DB": str(
                Path(self._tmp.enter_context(tempfile.TemporaryDirectory(prefix="vitrine-eval-"))) / "feedback.db"
            ),
            "VITRINE_TAGGER_FEEDBACK_DATABASE_URL": "",
        }
        return self._start("tagger", env).address

    def start_search(self, embedder: str, text_model: str, image_model: str, tagger: str = "") -> ServiceProcess:
        """A search service on a fresh, empty embedded store in a temporary folder (machine tags
        from `tagger` when given)."""
        data_dir = self._tmp.enter_context(tempfile.TemporaryDirectory(prefix="vitrine-eval-"))
        env = {
            "VITRINE_SEARCH_HOST": "127.0.0.1",
            "VITRINE_SEARCH_DATA_DIR": data_dir,
            "VITRINE_SEARCH_QDRANT_URL": "",  # never a shared Qdrant server: a store of its own
            "VITRINE_SEARCH_COLLECTION": "eval",
            "VITRINE_SEARCH_EMBEDDER_ADDRESS": embedder,
            "VITRINE_SEARCH_TEXT_MODEL": text_model,
            "VITRINE_SEARCH_IMAGE_MODEL": image_model,
            "VITRINE_SEARCH_MAX_PAGE_SIZE": str(RECALL_K),
            "VITRINE_SEARCH_TAGGER_ADDRESS": tagger,
        }
        return self._start("search", env)

    def stop(self, service: ServiceProcess) -> None:
        service.stop()
        if service in self.started:
            self.started.remove(service)

    def __exit__(self, *exc: object) -> None:
        for service in reversed(self.started):
            service.terminate()
        for service in reversed(self.started):
            service.stop()
        self.started.clear()
        self._tmp.close()


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
    out: dict[str, Any] = {key: _mean([g[key] for g in per_group.values()]) for key in ("best_score", "mean", "random")}
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


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def checks(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The issue's bars, with the measured value and whether it is met."""
    out: list[dict[str, Any]] = []
    methods = metrics["methods"]
    fused, tfidf = methods.get("fused"), methods.get("tfidf")
    if fused and tfidf and fused["ndcg@12"] is not None and tfidf["ndcg@12"]:
        ratio = fused["ndcg@12"] / tfidf["ndcg@12"]
        out.append({"check": "fused nDCG@12 / tfidf nDCG@12", "value": ratio, "bar": f">= {FUSED_OVER_TFIDF}"})
        out[-1]["passed"] = ratio >= FUSED_OVER_TFIDF
    if fused and fused["ndcg@12"] and fused["ndcg@12_typo"] is not None:
        ratio = fused["ndcg@12_typo"] / fused["ndcg@12"]
        out.append(
            {
                "check": "fused nDCG@12 typo / clean",
                "value": ratio,
                "bar": f">= {TYPO_OVER_CLEAN}",
                "passed": ratio >= TYPO_OVER_CLEAN,
            }
        )
    rates = [fused[k] for k in ("zero_result_rate", "zero_result_rate_typo") if fused and fused[k] is not None]
    if rates:
        worst = max(rates)
        out.append(
            {"check": "fused zero-result rate (clean, typo)", "value": worst, "bar": "= 0", "passed": worst == 0}
        )
    for key, figure in EFFICIENTNET_FIGURES.items():
        part = metrics.get("recommend", {}).get(key)
        if part and part.get("best_score") is not None:
            out.append(
                {
                    "check": f"Recommend {key} (best-score)",
                    "value": part["best_score"],
                    "bar": f">= {figure} (EfficientNet-Lite0 figure)",
                    "passed": part["best_score"] >= figure,
                }
            )
    return out


def markdown(metrics: Mapping[str, Any]) -> str:
    info = metrics["info"]
    lines = [
        f"Search quality — {info['data']} ({info['index']['objects']} objects, subjects withheld), "
        f"text model {info['text_model']}; {info['queries']['clean']} queries, {info['queries']['typo']} typo variants",
        "",
        "| method | nDCG@12 | recall@100 | zero-result | nDCG@12 typo | zero-result typo |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in metrics["methods"].items():
        lines.append(f"| {name} | " + " | ".join(_fmt(row[k]) for k in METRIC_KEYS) + " |")
    recommend = metrics.get("recommend") or {}
    if recommend:
        lines += [
            "",
            "Recommend quality — share of the top 12 in the liked objects' group "
            f"(like {LIKES}, {TRIALS} seeded trials a group, macro-average)",
            "",
            "| side | groups | model | best-score (default) | mean vector | random |",
            "| --- | ---: | --- | ---: | ---: | ---: |",
        ]
        for name, part in recommend.items():
            lines.append(
                f"| {name} | {part['groups']} | {part.get('model', '')} | {_fmt(part['best_score'])} | "
                f"{_fmt(part['mean'])} | {_fmt(part['random'])} |"
            )
    if metrics.get("checks"):
        lines += ["", "| bar (issue #13) | value | bar | met |", "| --- | ---: | --- | --- |"]
        for check in metrics["checks"]:
            lines.append(
                f"| {check['check']} | {_fmt(check['value'])} | {check['bar']} | {'yes' if check['passed'] else 'NO'} |"
            )
    if metrics.get("notes"):
        lines += [""] + [f"- {note}" for note in metrics["notes"]]
    return "\n".join(lines) + "\n"


def _source_digest() -> str:
    """A digest of the search service's source files as they are now (the running services
    loaded them at start): tells apart uncommitted builds."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _git_build() -> str:
    """The checkout the services run from: commit, '+dirty' when services/ or protos/ differ from
    it (changed or new files); best effort."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "services", "protos"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{commit}{'+dirty' if dirty else ''}" if commit else ""


# ----------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser, default_paintings: Path) -> None:
    p.add_argument("--data", required=True, help="Objects with curators' subjects (JSONL/JSONL.gz/JSON/CSV).")
    p.add_argument("--queries", help="Queries file (JSONL: query, relevant, optional typo_of); default: generated.")
    p.add_argument("--out", required=True, help="Output folder (metrics.json, metrics.md, queries, logs).")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--embedder", default="127.0.0.1:50051", help="Embedder address (default %(default)s).")
    where.add_argument("--start-embedder", action="store_true", help="Start an embedder of its own.")
    p.add_argument(
        "--embedder-models",
        help="Models of the embedder it starts (default: the text model, plus efficientnet-lite0 for paintings).",
    )
    p.add_argument("--text-model", default="mpnet", help="Text model of the search service (default %(default)s).")
    p.add_argument(
        "--tagger-model",
        help="A trained tagger version (folder): machine tags indexed with the objects (signal 'tags'). "
        "It must not have trained on any evaluated object (checked against its training_ids.txt).",
    )
    p.add_argument(
        "--image-model",
        default="",
        help="Image model of the paintings store (default: the service's choice, clip else efficientnet-lite0).",
    )
    p.add_argument("--limit", type=int, help="Only N objects, spread evenly over the file.")
    p.add_argument("--max-queries", type=int, default=300, help="Generated clean queries (default %(default)s).")
    p.add_argument("--min-relevant", type=int, default=3, help="Generated queries' least relevant objects (default 3).")
    p.add_argument("--seed", type=int, default=0, help="Seed of query generation and trials (default 0).")
    p.add_argument(
        "--max-groups", type=int, default=200, help="Subjects sampled for text-side Recommend (default %(default)s)."
    )
    paintings = p.add_mutually_exclusive_group()
    paintings.add_argument(
        "--paintings",
        help=f"Paintings folder (or its metadata file) for image-side Recommend (default {default_paintings}, "
        "skipped when absent).",
    )
    p.set_defaults(default_paintings=str(default_paintings))
    paintings.add_argument("--no-paintings", action="store_true", help="Skip image-side Recommend.")
    p.add_argument("--paintings-limit", type=int, help="Only N paintings, spread evenly.")
    p.add_argument("--batch-size", type=int, default=64, help="Objects per UpsertObjects call (default 64).")
    p.add_argument("--concurrency", type=int, default=4, help="RPCs in flight (default %(default)s).")
    p.add_argument("--ready-timeout", type=float, default=600.0, help="Seconds to wait for a service to start.")
    p.add_argument("--quiet", action="store_true", help="No progress output.")


def _paintings_file(value: str) -> Path:
    path = Path(value)
    return path / "metadata.jsonl" if path.is_dir() else path


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the evaluation like Ctrl-C does (and so stops its services)."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_eval(args: argparse.Namespace) -> int:
    data = Path(args.data)
    if not data.is_file():
        raise EvalError(f"no such file: {data}")
    paintings = None if args.no_paintings else _paintings_file(args.paintings or args.default_paintings)
    if paintings is not None and not paintings.is_file():
        if args.paintings:
            raise EvalError(f"no paintings metadata at {paintings} (--paintings DIR, or --no-paintings)")
        paintings = None  # the default folder is not on this machine: no image side
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def say(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    collection = read_collection(data, args.limit)
    tagger_model = _tagger_model(args.tagger_model, collection) if args.tagger_model else None
    if args.queries:
        queries = read_queries(Path(args.queries))
        queries_source = str(args.queries)
    else:
        queries = generate_queries(collection.subjects, args.max_queries, args.seed, args.min_relevant)
        if not queries:
            raise EvalError(f"{data}: no subject has {args.min_relevant} objects: give --queries")
        write_jsonl(out / "queries.jsonl", (q.to_json() for q in queries))
        queries_source = str(out / "queries.jsonl")
    say(f"{len(collection.texts)} objects, {len(queries)} queries ({queries_source})")

    with _sigterm_as_interrupt(), Services(out / "logs", args.ready_timeout, args.quiet) as services:
        if args.start_embedder:
            models = args.embedder_models or ",".join(
                dict.fromkeys([args.text_model, *([args.image_model or "efficientnet-lite0"] if paintings else [])])
            )
            embedder = services.start_embedder(models)
        else:
            embedder = args.embedder
        tagger = services.start_tagger(tagger_model, embedder) if tagger_model else ""
        metrics = asyncio.run(_evaluate(args, services, embedder, tagger, collection, queries, paintings, say))
    metrics["info"].update(queries_file=queries_source, seconds=round(time.perf_counter() - started, 1))
    metrics["checks"] = checks(metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    table = markdown(metrics)
    (out / "metrics.md").write_text(table)
    print(table)
    say(f"wrote {out / 'metrics.json'}, {out / 'metrics.md'} in {metrics['info']['seconds']:.0f} s")
    return 0


def _tagger_model(folder: str, collection: Collection) -> Path:
    """The tagger version folder, checked: trained, and never on an object being evaluated (its
    machine tags would then repeat the curators' subjects the queries are made of)."""
    path = Path(folder).resolve()
    meta = path / "meta.json"
    if not meta.is_file():
        raise EvalError(f"{path} is not a trained tagger version (no meta.json)")
    ids_file = path / json.loads(meta.read_text()).get("training_ids_file", "training_ids.txt")
    if not ids_file.is_file():
        raise EvalError(f"{path} lists no training ids ({ids_file.name}): cannot check it never saw these objects")
    overlap = set(ids_file.read_text().split()) & set(collection.ids)
    if overlap:
        raise EvalError(
            f"the tagger version {path.name} trained on {len(overlap)} of the evaluated objects "
            f"(e.g. {sorted(overlap)[:3]}): evaluate on objects it never saw"
        )
    return path


async def _evaluate(
    args: argparse.Namespace,
    services: Services,
    embedder: str,
    tagger: str,
    collection: Collection,
    queries: list[Query],
    paintings: Path | None,
    say: Any,
) -> dict[str, Any]:
    try:
        models = await list_models(embedder)
    except grpc.aio.AioRpcError as exc:
        raise EvalError(f"no embedder at {embedder} ({exc.code().name}): start one, or pass --start-embedder") from exc
    by_name = {m.name: m for m in models.models}
    text_info = by_name.get(args.text_model)
    if text_info is None:
        raise EvalError(f"the embedder at {embedder} has no model {args.text_model!r}: it has {', '.join(by_name)}")
    notes: list[str] = []
    if text_info.test_model:
        notes.append(f"text model {args.text_model} has test weights: these figures are not for reporting")
    timings: dict[str, float] = {}
    info: dict[str, Any] = {
        "data": str(collection.path),
        "text_model": args.text_model,
        "embedder": embedder,
        "text_to_image_available": models.text_to_image_available,
        "search_build": _git_build(),
        "search_source_sha256": _source_digest(),
        "seed": args.seed,
        "tagger_model": args.tagger_model or "",
    }
    metrics: dict[str, Any] = {"methods": {}, "recommend": {}, "info": info, "notes": notes}

    # -- the objects' store: search, then text-side Recommend --------------------------------
    search = services.start_search(embedder, args.text_model, "", tagger)
    async with open_channel(search.address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        clock = time.perf_counter()
        summary = await ingest_collection(search.address, collection, args)
        timings["ingest_objects"] = time.perf_counter() - clock
        for line in summary.lines():
            say(line)
        clock = time.perf_counter()
        store = await check_store(stub, collection.ids)
        timings["check_store"] = time.perf_counter() - clock
        if store.with_subjects:
            raise EvalError(f"{len(store.with_subjects)} stored objects carry subjects, e.g. {store.with_subjects[0]}")
        info["index"] = {**store.summary(), "records": len(collection.rows), "skipped": sum(summary.skipped.values())}
        present = set(store.present)
        texts = {i: t for i, t in collection.texts.items() if i in present}

        clock = time.perf_counter()
        methods = dict(SEARCH_METHODS)
        if not tagger:
            del methods["tags"]
            notes.append("tags: no machine tags (give --tagger-model); the tags signal had nothing to match")
        if not models.text_to_image_available:
            del methods["image"]
            notes.append(
                "image: skipped, the embedder has no CLIP weights (ListModels text_to_image_available is false)"
            )
        signals_seen: dict[str, dict[str, int]] = {}
        search_runs: dict[str, dict[str, Any]] = {}
        ranked: dict[str, list[list[str]]] = {}
        dense = ["text", *(["image"] if models.text_to_image_available else [])]
        for name, weights in methods.items():
            say(f"searching: {name} ({len(queries)} queries)")
            run = await run_method(stub, queries, weights, args.concurrency, dense)
            metrics["methods"][name] = method_metrics(queries, run.results)
            ranked[name] = run.results
            signals_seen[name] = dict(run.signals)
            search_runs[name] = {
                "degraded_answers": run.degraded,
                "retries": run.retries,
                "latency_s_mean": round(float(np.mean(run.latencies_s)), 3) if run.latencies_s else None,
                "latency_s_p95": round(float(np.percentile(run.latencies_s, 95)), 3) if run.latencies_s else None,
            }
            if run.degraded:
                notes.append(
                    f"{name}: {run.degraded} answers came without a signal the method asks for (embedder too slow "
                    f"even after {ATTEMPTS} tries): the figure understates the method"
                )
            if name in ("keyword", "image") and run.signals and set(run.signals) == {"text"}:
                notes.append(
                    f"{name}: every hit came from the text signal: this search build ignores signal_weights "
                    "(no hybrid search yet), so the figure is the text signal's"
                )
            if name == "image" and "image" in run.unavailable:
                notes.append("image: the service reported the image signal unavailable")
        tfidf = TfidfBaseline(texts)
        ranked["tfidf"] = [tfidf.search(q.query) for q in queries]
        metrics["methods"]["tfidf"] = method_metrics(queries, ranked["tfidf"])
        timings["search"] = time.perf_counter() - clock
        info["signals_seen"] = signals_seen
        info["search_calls"] = search_runs
        info["queries"] = {
            "clean": sum(q.typo_of is None for q in queries),
            "typo": sum(q.typo_of is not None for q in queries),
        }

        clock = time.perf_counter()
        groups = subject_groups(collection, store.present, args.max_groups, args.seed)
        if groups:
            say(f"recommend, text side: {len(groups)} subjects × {TRIALS} trials")
            part = await recommend_quality(
                stub, groups, store.present, search_pb2.VECTOR_SPACE_TEXT, "subject", args.seed, args.concurrency
            )
            metrics["recommend"]["text_subject"] = {**part, "model": args.text_model, "space": "text"}
        else:
            notes.append(f"text-side Recommend skipped: no subject has more than {LIKES} objects in the data")
        timings["recommend_text"] = time.perf_counter() - clock
    services.stop(search)
    write_jsonl(Path(args.out) / "per_query.jsonl", per_query(queries, ranked))

    # -- the paintings' store: image-side Recommend ------------------------------------------
    if paintings is not None:
        clock = time.perf_counter()
        await _image_side(args, services, embedder, models, paintings, metrics, say)
        timings["paintings"] = time.perf_counter() - clock
    info["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    return metrics


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


async def _image_side(
    args: argparse.Namespace,
    services: Services,
    embedder: str,
    models: embedder_pb2.ListModelsResponse,
    paintings: Path,
    metrics: dict[str, Any],
    say: Any,
) -> None:
    notes: list[str] = metrics["notes"]
    image_models = {m.name: m for m in models.models if embedder_pb2.MODALITY_IMAGE in m.modalities}
    if not image_models:
        notes.append(f"image-side Recommend skipped: the embedder at {embedder} has no image model")
        return
    collection = read_collection(paintings, args.paintings_limit)
    search = services.start_search(embedder, args.text_model, args.image_model)
    try:
        await _image_side_on(args, search, collection, paintings, image_models, metrics, say)
    finally:
        services.stop(search)


async def _image_side_on(
    args: argparse.Namespace,
    search: ServiceProcess,
    collection: Collection,
    paintings: Path,
    image_models: Mapping[str, embedder_pb2.ModelInfo],
    metrics: dict[str, Any],
    say: Any,
) -> None:
    notes: list[str] = metrics["notes"]
    async with open_channel(search.address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        info = await stub.GetCollectionInfo(search_pb2.GetCollectionInfoRequest(), timeout=30)
        image_model = info.image_model
        if image_models[image_model].test_model:
            notes.append(f"image-side Recommend skipped: {image_model} has test weights (never a reported figure)")
            return
        clock = time.perf_counter()
        summary = await ingest_collection(search.address, collection, args)
        for line in summary.lines():
            say(line)
        store = await check_store(stub, collection.ids)
        metrics["info"]["paintings"] = {
            "data": str(paintings),
            "image_model": image_model,
            "ingest_s": round(time.perf_counter() - clock, 1),
            **store.summary(),
        }
        for kind, groups in painting_groups(collection, store.with_image).items():
            say(f"recommend, image side ({kind}): {len(groups)} groups × {TRIALS} trials")
            part = await recommend_quality(
                stub, groups, store.with_image, search_pb2.VECTOR_SPACE_IMAGE, kind, args.seed, args.concurrency
            )
            metrics["recommend"][f"image_{kind}"] = {**part, "model": image_model, "space": "image"}
