"""The read path's plans: which signals a Search runs and how their lists are fused, spelling
correction, degradation when the embedder fails, and the vector queries of MoreLikeThis and
Recommend. Works over the async store interface and answers in domain terms (hits, signal
names, notices); the servicer (server.py) validates requests and writes the protobuf answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter as Tally
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import grpc
import numpy as np
from prometheus_client import Counter

from vitrine.common import rich_errors
from vitrine.common.errors import ServiceError, failed_precondition, not_found
from vitrine.search import keywords
from vitrine.search.fusion import FusedHit, fuse
from vitrine.search.recommend import cluster_likes, interleave, mean_query
from vitrine.search.settings import SearchSettings
from vitrine.search.store import AsyncStore, Conditions, ScoredObject, SparseVector, StoreReads

log = logging.getLogger("vitrine.search")

DEGRADED = Counter(
    "vitrine_search_degraded",
    "Search answers given without some of their signals, by reason (embedder_busy: it did not answer the "
    "query in time; embedder_unavailable: it is down or unreachable; both give keyword and tag matches only).",
    ["reason"],
)
for _reason in ("embedder_busy", "embedder_unavailable", "embedder_error"):
    DEGRADED.labels(_reason)  # exported at 0 from the start: an alert or panel sees a flat line, not no data

NO_TEXT_TO_IMAGE = (
    "text-to-image matching needs CLIP weights (VITRINE_EMBEDDER_CLIP_MODEL on the embedder); "
    "results come from the metadata text"
)
EMBEDDER_DOWN = (
    "the embedder is unavailable: these results come from keyword and tag matches only "
    "(meaning-based matching returns by itself when the embedder is back)"
)
EMBEDDER_BUSY = (
    "the embedder is busy (it did not embed the query in time): these results come from keyword and tag "
    "matches only; retry for meaning-based matching"
)
# Within the keyword signal: exact words count fully, the typo-tolerant trigram match half
# (measured on Tate subject queries: fuzzy alone scores about as well as exact words, together
# they do best; see keywords.py).
FUZZY_SHARE = 0.5
# Objects whose vectors are read to choose a spelling correction (enough to count its uses).
CORRECTION_SAMPLE = 200
# Keyword hits checked for a museum id typed in the query (its rare exact term ranks it near the top).
ACCESSION_CANDIDATES = 20


class QueryContext(Protocol):
    """What the planner reads from the service: the store, the settings and the models chosen at
    start-up (read at each call: they are set once the embedder has answered)."""

    store: AsyncStore
    settings: SearchSettings
    text_model: str
    image_model: str
    text_to_image: bool

    async def embed_query(self, model: str, text: str) -> np.ndarray: ...


@dataclass
class SearchPage:
    """One page of a Search: its fused hits (museum ids and payload), whether a next page exists,
    the signals that could not run (by name) and what the answer should tell the user."""

    hits: list[FusedHit]
    more: bool
    unavailable: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


class QueryPlanner:
    def __init__(self, context: QueryContext) -> None:
        self.context = context

    @property
    def store(self) -> AsyncStore:
        return self.context.store

    # -- Search ----------------------------------------------------------------------------

    async def search(
        self, query: str, size: int, offset: int, conditions: Conditions | None, weights: Mapping[str, float]
    ) -> SearchPage:
        """Hybrid search: MPNet text-to-metadata, keywords (typo-tolerant), subject tags
        (curators' and machine tags) and, with CLIP, text-to-image, each ranking its own
        candidates under the filter, fused by weighted reciprocal rank. Without the embedder the
        answer comes from keywords and tags alone and says so."""
        context, settings = self.context, self.context.settings
        # The same candidates for every page within the first `candidates` results, so
        # consecutive pages neither repeat nor skip hits.
        depth = max(settings.candidates, offset + size + 1)
        notices: list[str] = []
        unavailable: list[str] = []

        dense: dict[str, tuple[str, str]] = {}  # signal -> (vector name, embedder model)
        if weights["text"] > 0:
            dense["text"] = ("text", context.text_model)
        if weights["image"] > 0 and context.text_to_image:
            dense["image"] = ("image", context.image_model)
        # The query is embedded while the store checks its spelling; a corrected query (rare) is
        # embedded again.
        embeddings = {name: asyncio.ensure_future(context.embed_query(m, query)) for name, (_, m) in dense.items()}
        try:
            fixes = await self.store.reading(self._corrections, query)
            corrected = keywords.apply_corrections(query, fixes) if fixes else query
            if fixes:
                notices.append(
                    "no object has " + ", ".join(f"'{w}': also searched for '{c}'" for w, c in fixes.items())
                )
                for name, (_, model) in dense.items():
                    embeddings[name].cancel()
                    embeddings[name] = asyncio.ensure_future(context.embed_query(model, corrected))
            keyword_query = keywords.query_vectors(query, corrected if fixes else None)
            lexical, *dense_lists = await asyncio.gather(
                self.store.reading(self._lexical_matches, keyword_query, corrected, depth, conditions, weights),
                *(self._dense_matches(v, embeddings[n], depth, conditions) for n, (v, _) in dense.items()),
                return_exceptions=True,
            )
        finally:
            for embedding in embeddings.values():
                embedding.cancel()  # no-op once done; stops work nobody waits for after an error
        if isinstance(lexical, BaseException):
            raise lexical
        keyword_list, tag_list = lexical
        lists: dict[str, list[ScoredObject]] = {}
        failure: ServiceError | None = None
        for name, found in [("keyword", keyword_list), ("tags", tag_list), *zip(dense, dense_lists, strict=True)]:
            if isinstance(found, ServiceError) and name in dense:
                failure = found
            elif isinstance(found, BaseException):
                raise found
            elif name in dense or weights[name] > 0:
                lists[name] = found
        if not context.text_to_image:
            unavailable.append("image")
            notices.append(NO_TEXT_TO_IMAGE)
        if failure is not None:
            busy = rich_errors.reason_of(failure) == "EMBEDDER_BUSY"
            if failure.code == grpc.StatusCode.UNAVAILABLE:
                reason = "embedder_busy" if busy else "embedder_unavailable"
            else:
                reason = "embedder_error"
            DEGRADED.labels(reason).inc()
            log.warning("search without the embedder", extra={"reason": reason, "error": failure.message})
            missing = [n for n in dense if n not in lists]
            unavailable.extend(missing)
            if len(missing) < len(dense):
                notices.append(f"the embedder failed: no {' or '.join(missing)} matching in these results")
            else:
                notices.append(EMBEDDER_BUSY if busy else EMBEDDER_DOWN)
            if not lists:
                # Only meaning-based signals were asked for and none could run: keyword matches
                # rather than nothing.
                lists["keyword"] = keyword_list or await self.store.reading(
                    self._keyword_matches, keyword_query, depth, conditions
                )
                weights = {**weights, "keyword": 1.0}

        first = await self._accession_matches(query, lists.get("keyword", []))
        # One more than the page: whether a next page exists.
        fused = fuse(lists, weights, settings.fusion_k, first=first, limit=offset + size + 1)
        # Signals rank candidates by point key; only the page's objects are read.
        page = fused[offset : offset + size]
        stored = await self.store.get_by_keys([h.id for h in page])
        page = [
            dataclasses.replace(h, id=stored[h.id].id, payload=stored[h.id].payload) for h in page if h.id in stored
        ]
        return SearchPage(page, len(fused) > offset + size, unavailable, notices)

    async def _dense_matches(
        self, vector_name: str, embedding: Awaitable[np.ndarray], depth: int, conditions: Conditions | None
    ) -> list[ScoredObject]:
        vector = await embedding
        return await self.store.query(
            vector_name, vector, limit=depth, conditions=conditions, keys_only=True, approximate=True
        )

    # The lexical work of a Search runs on the store's thread in one hop each (spelling, then the
    # keyword and tags signals): see AsyncStore.reading.

    def _corrections(self, store: StoreReads, query: str) -> dict[str, str]:
        """Spelling corrections for the query's words that no stored object has: the spelling
        one edit away that most objects have ({} when every word is known or nothing is near).
        Uses the store only: the words of the collection are its keyword and tag vectors.
        Runs on the store's thread."""
        fixes: dict[str, str] = {}
        words = [w for w in dict.fromkeys(keywords.words(query)) if keywords.correctable(w)]
        for word in words:
            term = keywords.term_vector(keywords.stem(word))
            if any(store.sparse_query(n, term, limit=1, keys_only=True) for n in (keywords.KEYWORDS, keywords.TAGS)):
                continue
            found = keywords.candidates(word)
            probe = SparseVector.from_dict(dict.fromkeys(found, 1.0))
            counts: Tally[int] = Tally()
            for name in (keywords.NGRAMS, keywords.TAGS):
                hits = store.sparse_query(name, probe, limit=CORRECTION_SAMPLE, keys_only=True)
                if not hits:
                    continue
                vectors = store.sparse_vectors([h.id for h in hits], name)
                counts.update(i for v in vectors.values() for i in v.indices if i in found)
            best = keywords.best_candidate(found, counts)
            if best is not None:
                fixes[word] = best
        return fixes

    def _lexical_matches(
        self,
        store: StoreReads,
        query: keywords.KeywordQuery,
        corrected: str,
        depth: int,
        conditions: Conditions | None,
        weights: Mapping[str, float],
    ) -> tuple[list[ScoredObject], list[ScoredObject]]:
        """The keyword signal's and the tags signal's ranked lists, as point keys (empty for a
        signal of weight 0: not asked). Runs on the store's thread."""
        return (
            self._keyword_matches(store, query, depth, conditions) if weights["keyword"] > 0 else [],
            self._tag_matches(store, query, corrected, depth, conditions) if weights["tags"] > 0 else [],
        )

    def _keyword_matches(
        self, store: StoreReads, query: keywords.KeywordQuery, depth: int, conditions: Conditions | None
    ) -> list[ScoredObject]:
        """The keyword signal's ranked list: exact words and trigrams, fused by rank."""
        exact = (
            store.sparse_query(keywords.KEYWORDS, query.keywords, depth, conditions, keys_only=True)
            if query.keywords
            else []
        )
        fuzzy = (
            store.sparse_query(keywords.NGRAMS, query.ngrams, depth, conditions, keys_only=True) if query.ngrams else []
        )
        shares = {"exact": 1.0, "fuzzy": FUZZY_SHARE}
        fused = fuse({"exact": exact, "fuzzy": fuzzy}, shares, self.context.settings.fusion_k, limit=depth)
        return [ScoredObject(h.id, h.score, h.payload) for h in fused]

    def _tag_matches(
        self,
        store: StoreReads,
        query: keywords.KeywordQuery,
        corrected: str,
        depth: int,
        conditions: Conditions | None,
    ) -> list[ScoredObject]:
        """The tags signal's ranked list: the query's terms (both spellings when corrected)
        against the terms of the objects' curators' and machine tags. Tags answer what an object
        is about, so an object counts only when its tags cover at least half of the query's words:
        one tag word of a long query ("medieval" of "medieval saint fighting a dragon") is not
        what was asked for, and would otherwise outrank the objects that match the whole query.
        The store applies that rule as a filter (on the tag term ids in the payload), so the
        candidates are the best objects that pass it, with no vectors read back."""
        if not query.keywords:
            return []
        wanted = tuple(sorted({keywords.term_id(t) for t in keywords.query_terms(corrected)}))
        if len(wanted) >= 3:  # one matched word of two is half
            need = (len(wanted) + 1) // 2
            conditions = dataclasses.replace(conditions or Conditions(), tag_terms=wanted, min_tag_terms=need)
        return store.sparse_query(keywords.TAGS, query.keywords, depth, conditions, keys_only=True)

    async def _accession_matches(self, query: str, keyword_hits: Sequence[ScoredObject]) -> list[str]:
        """The point keys of keyword hits whose museum id is a word of the query: an accession
        number typed as the query puts that object first."""
        wanted_ids = keywords.id_like(query)
        if not wanted_ids or not keyword_hits:
            return []
        keys = [h.id for h in keyword_hits[:ACCESSION_CANDIDATES]]
        found = await self.store.get_by_keys(keys, payload_fields=[])
        return [key for key, point in found.items() if keywords.fold(point.id) in wanted_ids]

    # -- MoreLikeThis and Recommend --------------------------------------------------------

    async def more_like_this(
        self, museum_id: str, k: int, space: str | None, conditions: Conditions | None
    ) -> tuple[list[ScoredObject], str]:
        """The objects nearest to one object in a vector space (None: its image's when it has
        one), and that space's vector name."""
        vectors = (await self.store.get_vectors([museum_id])).get(museum_id)
        if vectors is None:
            raise not_found(f"object {museum_id!r} is not in the collection")
        name = space or ("image" if "image" in vectors else "text")
        if name not in vectors:
            other = "VECTOR_SPACE_TEXT" if name == "image" else "VECTOR_SPACE_IMAGE"
            raise failed_precondition(f"object {museum_id!r} has no {name} vector: ask for {other}")
        found = await self.store.query(name, vectors[name], limit=k, conditions=conditions, exclude_ids=[museum_id])
        return found, name

    async def recommend(
        self,
        liked: Sequence[str],
        disliked: Sequence[str],
        seen: Sequence[str],
        k: int,
        space: str | None,
        mean: bool,
        diversify: bool,
        conditions: Conditions | None,
    ) -> tuple[list[ScoredObject], str]:
        """Objects like the liked ones and unlike the disliked, none of them seen, in a vector
        space (None: the image space when every liked object has an image): the mean of the
        examples as one query, or Qdrant's best score; with `diversify`, one query per cluster of
        liked objects, interleaved. Also returns the space's vector name."""
        vectors = await self.store.get_vectors([*liked, *disliked])
        unknown = [i for i in [*liked, *disliked] if i not in vectors]
        if unknown:
            raise not_found(f"unknown object ids: {', '.join(unknown[:10])}" + (" ..." if len(unknown) > 10 else ""))
        name = space or ("image" if all("image" in vectors[i] for i in liked) else "text")
        positives = [vectors[i][name] for i in liked if name in vectors[i]]
        if not positives:
            raise failed_precondition(f"none of the liked objects has a {name} vector: ask for VECTOR_SPACE_TEXT")
        dim = self.store.dimensions()[name]
        liked_rows = np.stack(positives)
        disliked_rows = np.stack([vectors[i][name] for i in disliked if name in vectors[i]] or [np.zeros((0, dim))])
        disliked_rows = disliked_rows.reshape(-1, dim)

        exclude = list(dict.fromkeys([*seen, *liked, *disliked]))
        groups = cluster_likes(liked_rows) if diversify else [np.arange(len(liked_rows))]
        ranked_lists = []
        for group in groups:
            if mean:
                query = mean_query(liked_rows[group], disliked_rows)
                found = await self.store.query(name, query, limit=k, conditions=conditions, exclude_ids=exclude)
            else:
                found = await self.store.recommend(
                    name, liked_rows[group], disliked_rows, limit=k, conditions=conditions, exclude_ids=exclude
                )
            ranked_lists.append(found)
        return interleave(ranked_lists, k), name
