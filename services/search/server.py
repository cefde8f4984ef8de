"""The search service: `python -m vitrine.search.server`.

Start-up opens the vector store and waits for the embedder (its ListModels gives the vector
dimensions) before health turns SERVING. Every vector comes from the embedder; the store runs on
its own thread (see `store.AsyncStore`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import sys
from collections import Counter as Tally
from collections.abc import Awaitable, Mapping, Sequence

import grpc
import numpy as np
from prometheus_client import Counter

from vitrine.common.embedder_client import EmbedderClient
from vitrine.common.errors import (
    ServiceError,
    failed_precondition,
    invalid_argument,
    not_found,
    unavailable,
)
from vitrine.common.security import method_paths
from vitrine.common.server import run_server
from vitrine.common.settings import load_settings
from vitrine.common.validation import bounded_int, known_enum, require_count, require_text
from vitrine.common.vocabulary import Vocabulary
from vitrine.search import keywords
from vitrine.search.fusion import FusedHit, check_weights, fuse
from vitrine.search.indexing import IndexBuilder
from vitrine.search.listing import list_objects
from vitrine.search.machine_tags import MachineTagger
from vitrine.search.recommend import cluster_likes, interleave, mean_query
from vitrine.search.records import content_hash, object_text, object_to_payload, payload_to_object
from vitrine.search.refusals import MAX_ID_CHARS, check_objects
from vitrine.search.settings import ENV_PREFIX, SearchSettings
from vitrine.search.snapshot_service import SnapshotService
from vitrine.search.store import (
    TAG_TERMS_FIELD,
    AsyncStore,
    Conditions,
    EmbeddedStore,
    ScoredObject,
    SparseVector,
    StoredPoint,
    StoreError,
    open_store,
)
from vitrine.v1 import common_pb2, embedder_pb2, search_pb2, search_pb2_grpc

log = logging.getLogger("vitrine.search")

QUERIES = Counter(
    "vitrine_search_queries",
    "Search, MoreLikeThis and Recommend answers, by whether they found anything (zero-result rate).",
    ["grpc_method", "result"],
)


DEGRADED = Counter(
    "vitrine_search_degraded",
    "Search answers given without some of their signals, by reason (embedder_unavailable: keyword and tag "
    "matches only).",
    ["reason"],
)
for _reason in ("embedder_unavailable", "embedder_error"):
    DEGRADED.labels(_reason)  # exported at 0 from the start: an alert or panel sees a flat line, not no data


def count_answer(method: str, hits: Sequence[object]) -> None:
    QUERIES.labels(method, "nonzero" if hits else "zero").inc()


NO_TEXT_TO_IMAGE = (
    "text-to-image matching needs CLIP weights (VITRINE_EMBEDDER_CLIP_MODEL on the embedder); "
    "results come from the metadata text"
)
EMBEDDER_DOWN = (
    "the embedder is unavailable: these results come from keyword and tag matches only "
    "(meaning-based matching returns by itself when the embedder is back)"
)
# Search signals by their name in SearchRequest.signal_weights.
SIGNALS = {
    "text": search_pb2.SIGNAL_TEXT,
    "keyword": search_pb2.SIGNAL_KEYWORD,
    "image": search_pb2.SIGNAL_IMAGE,
    "tags": search_pb2.SIGNAL_TAGS,
}
# Within the keyword signal: exact words count fully, the typo-tolerant trigram match half
# (measured on Tate subject queries: fuzzy alone scores about as well as exact words, together
# they do best; see keywords.py).
FUZZY_SHARE = 0.5
# Objects whose vectors are read to choose a spelling correction (enough to count its uses).
CORRECTION_SAMPLE = 200
# Keyword hits checked for a museum id typed in the query (its rare exact term ranks it near the top).
ACCESSION_CANDIDATES = 20

# RPCs that change the collection or copy it out whole: they need the auth token when one is configured.
WRITE_METHODS = ("UpsertObjects", "DeleteObjects", "CreateSnapshot", "DownloadSnapshot", "DeleteSnapshot")
MAX_DELETE_IDS = 1000
MAX_EXAMPLE_IDS = 100  # liked or disliked ids in one Recommend request
MAX_SEEN_IDS = 5000  # a long session; the client keeps it
# Models truncate to a few hundred tokens anyway; this keeps requests within the embedder's limit.
MAX_EMBED_TEXT_CHARS = 4000
# Images of one EmbedImages call stay under the gRPC message limit (32 MiB by default).
MAX_IMAGE_BYTES_PER_CALL = 16 * 1024 * 1024
# Stored instead of the content hash when part of an object could not be embedded (its image),
# so that the next ingest of the same object tries again rather than counting it unchanged.
PARTIAL_PREFIX = "partial:"
# Preferred image models, best first, when the settings leave the choice to the service.
IMAGE_MODEL_PREFERENCE = ("clip", "efficientnet-lite0")


_EMBEDDER_INDEX = re.compile(r"\bimages\[\d+\]")


def _has_image(obj: common_pb2.CollectionObject) -> bool:
    return obj.image.WhichOneof("source") is not None


def to_conditions(f: search_pb2.Filter) -> Conditions | None:
    """The request's Filter as store conditions (None when it restricts nothing)."""
    year_from = f.year_from if f.HasField("year_from") else None
    year_to = f.year_to if f.HasField("year_to") else None
    if year_from is not None and year_to is not None and year_from > year_to:
        raise invalid_argument(f"filter.year_from ({year_from}) is after filter.year_to ({year_to})")

    def values(items: Sequence[str]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v.strip() for v in items if v.strip()))

    conditions = Conditions(
        artists=values(f.artists),
        classifications=values(f.classifications),
        mediums=values(f.mediums),
        tags=values(f.tags),
        year_from=year_from,
        year_to=year_to,
        has_image=f.has_image if f.HasField("has_image") else None,
    )
    return None if conditions == Conditions() else conditions


def choose_image_model(models: embedder_pb2.ListModelsResponse, wanted: str) -> str:
    """The image model to use: `wanted` if set, else CLIP with real weights, else
    efficientnet-lite0, else any image model ('' when the embedder has none)."""
    image_models = {m.name: m for m in models.models if embedder_pb2.MODALITY_IMAGE in m.modalities}
    if wanted:
        if wanted not in image_models:
            raise RuntimeError(
                f"image model {wanted!r} (VITRINE_SEARCH_IMAGE_MODEL) is not loaded by the embedder; "
                f"it has: {', '.join(image_models) or 'no image model'}"
            )
        return wanted
    for name in IMAGE_MODEL_PREFERENCE:
        if name in image_models and not image_models[name].test_model:
            return name
    return next(iter(image_models), "")


class SearchService:
    """The service's state and logic, apart from gRPC plumbing."""

    def __init__(self, settings: SearchSettings) -> None:
        self.settings = settings
        self.store = AsyncStore(
            open_store(settings.data_dir, settings.collection, settings.qdrant_url, settings.qdrant_api_key)
        )
        # Made in `start`: a grpc.aio channel belongs to the event loop it is created on.
        self._embedder: EmbedderClient | None = None
        # Query embeddings go through a client of their own: a short deadline and one retry, so a
        # Search answers quickly (keywords only) when the embedder is down.
        self._query_embedder: EmbedderClient | None = None
        self.text_model = settings.text_model
        self.image_model = ""
        self.text_to_image = False
        self.tagger = (
            MachineTagger(
                settings.tagger_address,
                settings.machine_tags,
                settings.machine_tag_min_score,
                tls_ca_file=settings.tls_ca_file,
            )
            if settings.tagger_address
            else None
        )
        self.indexer: IndexBuilder | None = None
        # The subject vocabulary the tags signal indexes every label of a tag's term from (None: none).
        self.vocabulary: Vocabulary | None = None
        self.vocabulary_version = ""
        self.snapshots = SnapshotService(self.store, settings.snapshot_folder, settings.qdrant_url)
        self.ready = False

    @property
    def embedder(self) -> EmbedderClient:
        if self._embedder is None:
            raise unavailable("the search service is starting; retry shortly")
        return self._embedder

    async def start(self) -> None:
        # Fail fast on an unusable store folder or vocabulary rather than after waiting for the embedder.
        await self.store.stored_dimensions()
        if self.settings.vocabulary:
            try:
                self.vocabulary = await asyncio.to_thread(
                    Vocabulary.load, self.settings.vocabulary, self.settings.vocabulary_language
                )
            except (OSError, ValueError) as exc:
                raise RuntimeError(f"{ENV_PREFIX}VOCABULARY: {exc}") from exc
            self.vocabulary_version = keywords.vocabulary_version(self.vocabulary)
            log.info("vocabulary loaded", extra={"terms": len(self.vocabulary), "path": self.settings.vocabulary})
        self._embedder = EmbedderClient(self.settings.embedder_address, tls_ca_file=self.settings.tls_ca_file)
        self._query_embedder = EmbedderClient(
            self.settings.embedder_address,
            timeout_s=self.settings.query_embed_timeout_s,
            retries=1,
            tls_ca_file=self.settings.tls_ca_file,
        )
        log.info("waiting for the embedder", extra={"address": self.settings.embedder_address})
        await self.embedder.wait_until_serving(self.settings.embedder_wait_s)
        models = await self.embedder.list_models()
        by_name = {m.name: m for m in models.models}
        text = by_name.get(self.text_model)
        if text is None or embedder_pb2.MODALITY_TEXT not in text.modalities:
            able = [m.name for m in models.models if embedder_pb2.MODALITY_TEXT in m.modalities]
            raise RuntimeError(
                f"text model {self.text_model!r} (VITRINE_SEARCH_TEXT_MODEL) is not a text model of the embedder; "
                f"it has: {', '.join(able) or 'none'}"
            )
        self.image_model = choose_image_model(models, self.settings.image_model)
        self.text_to_image = models.text_to_image_available and self.image_model == "clip"
        dims = {"text": text.dimension}
        if self.image_model:
            dims["image"] = by_name[self.image_model].dimension
        else:
            log.warning("the embedder has no image model: objects are stored without image vectors")
        await self.store.ensure_collection(dims)
        if isinstance(self.store.store, EmbeddedStore) and self.settings.index_min_new_objects:
            self.indexer = IndexBuilder(self.store, self.settings.index_min_new_objects, self.settings.index_idle_s)
            self.indexer.start()
        count = await self.store.count()
        log.info(
            "store open",
            extra={
                "store": self.store.kind,
                "objects": count,
                "text_model": self.text_model,
                "image_model": self.image_model,
                "dimensions": str(dims),
            },
        )
        self.ready = True

    async def close(self) -> None:
        if self.indexer is not None:
            await self.indexer.close()
        await self.store.close()
        for client in (self._embedder, self._query_embedder, self.tagger):
            if client is not None:
                await client.close()

    def check_ready(self) -> None:
        if not self.ready:
            raise unavailable("the search service is starting (waiting for the embedder or the store); retry shortly")

    @property
    def models(self) -> list[str]:
        return [self.text_model, self.image_model]

    # -- write path ------------------------------------------------------------------------

    async def _embed_images(self, images: list[common_pb2.Image]) -> list[np.ndarray | str]:
        """One vector per image, or the reason it could not be embedded. A bad image fails the
        whole embedder call, so a failed group is retried image by image."""
        results: list[np.ndarray | str] = []
        group: list[common_pb2.Image] = []
        size = 0

        async def flush() -> None:
            nonlocal group, size
            if not group:
                return
            try:
                results.extend(await self.embedder.embed_images(self.image_model, group))
            except ServiceError as exc:
                if exc.code != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                for image in group:
                    try:
                        results.append((await self.embedder.embed_images(self.image_model, [image]))[0])
                    except ServiceError as one:
                        if one.code != grpc.StatusCode.INVALID_ARGUMENT:
                            raise
                        # Sent one at a time, the embedder's "images[0]" means this image.
                        results.append(_EMBEDDER_INDEX.sub("the image", one.message.removeprefix("embedder: ")))
            group, size = [], 0

        for image in images:
            if group and size + image.ByteSize() > MAX_IMAGE_BYTES_PER_CALL:
                await flush()
            group.append(image)
            size += image.ByteSize()
        await flush()
        return results

    async def upsert(self, objects: Sequence[common_pb2.CollectionObject]) -> search_pb2.UpsertObjectsResponse:
        self.check_ready()
        refusals = check_objects(objects, self.settings.max_objects_per_upsert)
        if refusals.all_refused():
            raise refusals.error()
        index_of = {o.id: i for i, o in enumerate(objects) if i not in refusals}
        objects = [objects[i] for i in index_of.values()]
        answer = search_pb2.UpsertObjectsResponse()
        # The keyword format (and whether machine tags are wanted) is hashed in too: when it
        # changes, stored objects are re-indexed.
        indexing = [*self.models, keywords.VERSION, "machine-tags" if self.tagger else ""]
        if self.vocabulary_version:  # only then: without a vocabulary, stored hashes stay as they were
            indexing.append(self.vocabulary_version)
        hashes = {obj.id: content_hash(obj, indexing) for obj in objects}
        stored = await self.store.get(list(hashes), payload_fields=["content_hash", "machine_tags_version"])
        # Objects tagged by another model version than the tagger's now are tagged again.
        tagger_version = await self.tagger.version() if self.tagger else ""
        changed = [
            o
            for o in objects
            if o.id not in stored
            or stored[o.id].payload.get("content_hash") != hashes[o.id]
            or (tagger_version and stored[o.id].payload.get("machine_tags_version") != tagger_version)
        ]
        answer.unchanged = len(objects) - len(changed)

        max_image_bytes = int(self.settings.max_image_mb * 1024 * 1024)
        texts = {o.id: object_text(o)[:MAX_EMBED_TEXT_CHARS] for o in changed}
        image_problems: dict[str, str] = {}
        with_image: list[common_pb2.CollectionObject] = []
        for o in changed:
            if not _has_image(o):
                continue
            if not self.image_model:
                image_problems[o.id] = "the embedder has no image model"
            elif o.image.HasField("data") and len(o.image.data) > max_image_bytes:
                refusals.image_too_large(index_of[o.id], self.settings.max_image_mb)
            else:
                with_image.append(o)

        text_ids = [i for i, t in texts.items() if t]
        text_rows, image_rows, machine_tags = await asyncio.gather(
            self.embedder.embed_texts(self.text_model, [texts[i] for i in text_ids])
            if text_ids
            else asyncio.sleep(0, result=[]),
            self._embed_images([o.image for o in with_image]) if with_image else asyncio.sleep(0, result=[]),
            self.tagger.tag(changed) if self.tagger and changed else asyncio.sleep(0, result={}),
        )
        vectors: dict[str, dict[str, np.ndarray]] = {o.id: {} for o in changed}
        for museum_id, row in zip(text_ids, text_rows, strict=True):
            vectors[museum_id]["text"] = row
        for o, result in zip(with_image, image_rows, strict=True):
            if isinstance(result, str):
                refusals.image_not_embedded(index_of[o.id], result, has_text=bool(texts[o.id]))
            else:
                vectors[o.id]["image"] = result

        points = []
        for o in changed:
            if index_of[o.id] in refusals:
                continue
            if not vectors[o.id]:
                refusals.nothing_to_embed(index_of[o.id], image_problems.get(o.id, ""))
                continue
            # Partial: stored without its image or machine tags; the next ingest tries again.
            partial = o.id in image_problems or machine_tags is None
            payload = object_to_payload(o, (PARTIAL_PREFIX if partial else "") + hashes[o.id], "image" in vectors[o.id])
            sparse = keywords.object_vectors(o)
            tags = (machine_tags or {}).get(o.id)
            if tags is not None:
                payload["machine_tags"] = [[label, round(score, 4)] for label, score in tags.tags]
            if machine_tags is not None:
                # Also on objects the tagger rejected (no text to tag): they are not asked again
                # until the version changes.
                payload["machine_tags_version"] = tags.version if tags else tagger_version
            machine = tags.tags if tags else ()
            tag_vector = keywords.tag_vector(o.subjects, machine, self.vocabulary)
            if tag_vector is not None:
                sparse[keywords.TAGS] = tag_vector
                payload[TAG_TERMS_FIELD] = keywords.tag_term_ids(o.subjects, machine, self.vocabulary)
            points.append(StoredPoint(o.id, {**vectors[o.id], **sparse}, payload))
        if refusals.all_refused():
            raise refusals.error()
        await self.store.upsert(points)
        if self.indexer is not None:
            self.indexer.wrote()
        answer.upserted = len(points)
        refusals.fill(answer)
        if image_problems:
            log.warning(
                "objects stored without their image",
                extra={"count": len(image_problems), "first": str(next(iter(image_problems.items())))},
            )
        log.info(
            "upsert",
            extra={"upserted": answer.upserted, "unchanged": answer.unchanged, "refused": len(answer.errors)},
        )
        return answer

    async def delete(self, ids: Sequence[str]) -> int:
        self.check_ready()
        require_count(ids, "ids", MAX_DELETE_IDS)
        for i, museum_id in enumerate(ids):
            if not museum_id.strip():
                raise invalid_argument(f"ids[{i}] is empty")
        deleted = await self.store.delete(list(ids))
        if self.indexer is not None:
            self.indexer.wrote()
        return deleted

    # -- read path -------------------------------------------------------------------------

    async def get_object(self, museum_id: str) -> search_pb2.GetObjectResponse:
        self.check_ready()
        museum_id = require_text(museum_id, "id", MAX_ID_CHARS)
        found = (await self.store.get([museum_id], with_vectors=True)).get(museum_id)
        if found is None:
            raise not_found(f"object {museum_id!r} is not in the collection")
        return search_pb2.GetObjectResponse(
            object=payload_to_object(museum_id, found.payload),
            vectors=sorted(found.vectors),
            machine_tags=[
                search_pb2.MachineTag(label=label, score=score)
                for label, score in found.payload.get("machine_tags", [])
            ],
            machine_tags_version=found.payload.get("machine_tags_version", ""),
        )

    async def list_objects(self, request: search_pb2.ListObjectsRequest) -> search_pb2.ListObjectsResponse:
        self.check_ready()
        settings = self.settings
        conditions = to_conditions(request.filter)
        return await list_objects(self.store, request, conditions, settings.default_page_size, settings.max_page_size)

    async def collection_info(self) -> search_pb2.GetCollectionInfoResponse:
        self.check_ready()
        return search_pb2.GetCollectionInfoResponse(
            objects=await self.store.count(),
            objects_with_image=await self.store.count(Conditions(has_image=True)),
            store=self.store.kind,
            vector_dimensions=self.store.dimensions(),
            image_model=self.image_model,
            text_model=self.text_model,
        )

    def _page(self, page: common_pb2.PageRequest) -> tuple[int, int]:
        size = bounded_int(
            page.page_size, "page.page_size", self.settings.default_page_size, self.settings.max_page_size
        )
        offset = 0
        if page.page_token:
            if not page.page_token.isdigit() or int(page.page_token) > self.settings.max_offset:
                raise invalid_argument(
                    f"page.page_token {page.page_token[:40]!r} is not one this service gave "
                    f"(pages go at most {self.settings.max_offset} results deep)"
                )
            offset = int(page.page_token)
        return size, offset

    def _hits(self, found: Sequence[ScoredObject], signal: int, first_rank: int) -> list[search_pb2.SearchHit]:
        return [
            search_pb2.SearchHit(
                object=payload_to_object(hit.id, hit.payload),
                score=hit.score,
                signals=[search_pb2.SignalMatch(signal=signal, rank=first_rank + n, score=hit.score)],
            )
            for n, hit in enumerate(found)
        ]

    def _signal_weights(self, requested: Mapping[str, float]) -> dict[str, float]:
        """The fusion weight of each signal: the server's defaults, overridden by the request."""
        try:
            given = check_weights(requested, list(SIGNALS))
        except ValueError as exc:
            raise invalid_argument(f"signal_weights: {exc}") from exc
        weights = {
            "text": self.settings.weight_text,
            "keyword": self.settings.weight_keyword,
            "image": self.settings.weight_image,
            "tags": self.settings.weight_tags,
            **given,
        }
        if not any(weights.values()):
            raise invalid_argument("signal_weights: every signal has weight 0; give at least one a positive weight")
        return weights

    # The lexical work of a Search runs on the store's thread in one hop each (spelling, then the
    # keyword and tags signals): each hop to that thread costs a thread switch and a wait for the
    # GIL, more than a keys-only sparse query itself (0.1-0.5 ms at 100k objects).

    def _corrections(self, query: str) -> dict[str, str]:
        """Spelling corrections for the query's words that no stored object has: the spelling
        one edit away that most objects have ({} when every word is known or nothing is near).
        Uses the store only: the words of the collection are its keyword and tag vectors.
        Runs on the store's thread."""
        store = self.store.store
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
        query: keywords.KeywordQuery,
        corrected: str,
        depth: int,
        conditions: Conditions | None,
        weights: Mapping[str, float],
    ) -> tuple[list[ScoredObject], list[ScoredObject]]:
        """The keyword signal's and the tags signal's ranked lists, as point keys (empty for a
        signal of weight 0: not asked). Runs on the store's thread."""
        return (
            self._keyword_matches(query, depth, conditions) if weights["keyword"] > 0 else [],
            self._tag_matches(query, corrected, depth, conditions) if weights["tags"] > 0 else [],
        )

    def _keyword_matches(
        self, query: keywords.KeywordQuery, depth: int, conditions: Conditions | None
    ) -> list[ScoredObject]:
        """The keyword signal's ranked list: exact words and trigrams, fused by rank."""
        store = self.store.store
        exact = (
            store.sparse_query(keywords.KEYWORDS, query.keywords, depth, conditions, keys_only=True)
            if query.keywords
            else []
        )
        fuzzy = (
            store.sparse_query(keywords.NGRAMS, query.ngrams, depth, conditions, keys_only=True) if query.ngrams else []
        )
        shares = {"exact": 1.0, "fuzzy": FUZZY_SHARE}
        fused = fuse({"exact": exact, "fuzzy": fuzzy}, shares, self.settings.fusion_k, limit=depth)
        return [ScoredObject(h.id, h.score, h.payload) for h in fused]

    def _tag_matches(
        self, query: keywords.KeywordQuery, corrected: str, depth: int, conditions: Conditions | None
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
        return self.store.store.sparse_query(keywords.TAGS, query.keywords, depth, conditions, keys_only=True)

    async def _accession_matches(self, query: str, keyword_hits: Sequence[ScoredObject]) -> list[str]:
        """The point keys of keyword hits whose museum id is a word of the query: an accession
        number typed as the query puts that object first."""
        wanted_ids = keywords.id_like(query)
        if not wanted_ids or not keyword_hits:
            return []
        keys = [h.id for h in keyword_hits[:ACCESSION_CANDIDATES]]
        found = await self.store.call(self.store.store.get_by_keys, keys, payload_fields=[])
        return [key for key, point in found.items() if keywords.fold(point.id) in wanted_ids]

    async def _embed_query(self, model: str, text: str) -> np.ndarray:
        client = self._query_embedder
        if client is None:
            raise unavailable("the search service is starting; retry shortly")
        return (await client.embed_texts(model, [text[:MAX_EMBED_TEXT_CHARS]]))[0]

    async def _dense_matches(
        self, vector_name: str, embedding: Awaitable[np.ndarray], depth: int, conditions: Conditions | None
    ) -> list[ScoredObject]:
        vector = await embedding
        return await self.store.query(
            vector_name, vector, limit=depth, conditions=conditions, keys_only=True, approximate=True
        )

    async def search(self, request: search_pb2.SearchRequest) -> search_pb2.SearchResponse:
        """Hybrid search: MPNet text-to-metadata, keywords (typo-tolerant), subject tags
        (curators' and machine tags) and, with CLIP, text-to-image, each ranking its own
        candidates under the filter, fused by weighted reciprocal rank. Without the embedder the
        answer comes from keywords and tags alone and says so."""
        self.check_ready()
        query = require_text(request.query, "query", self.settings.max_query_chars)
        size, offset = self._page(request.page)
        conditions = to_conditions(request.filter)
        weights = self._signal_weights(request.signal_weights)
        # The same candidates for every page within the first `candidates` results, so
        # consecutive pages neither repeat nor skip hits.
        depth = max(self.settings.candidates, offset + size + 1)
        notices: list[str] = []
        unavailable_signals: list[int] = []

        dense: dict[str, tuple[str, str]] = {}  # signal -> (vector name, embedder model)
        if weights["text"] > 0:
            dense["text"] = ("text", self.text_model)
        if weights["image"] > 0 and self.text_to_image:
            dense["image"] = ("image", self.image_model)
        # The query is embedded while the store checks its spelling; a corrected query (rare) is
        # embedded again.
        embeddings = {name: asyncio.ensure_future(self._embed_query(m, query)) for name, (_, m) in dense.items()}
        try:
            fixes = await self.store.call(self._corrections, query)
            corrected = keywords.apply_corrections(query, fixes) if fixes else query
            if fixes:
                notices.append(
                    "no object has " + ", ".join(f"'{w}': also searched for '{c}'" for w, c in fixes.items())
                )
                for name, (_, model) in dense.items():
                    embeddings[name].cancel()
                    embeddings[name] = asyncio.ensure_future(self._embed_query(model, corrected))
            keyword_query = keywords.query_vectors(query, corrected if fixes else None)
            lexical, *dense_lists = await asyncio.gather(
                self.store.call(self._lexical_matches, keyword_query, corrected, depth, conditions, weights),
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
        if not self.text_to_image:
            unavailable_signals.append(search_pb2.SIGNAL_IMAGE)
            notices.append(NO_TEXT_TO_IMAGE)
        if failure is not None:
            reason = "embedder_unavailable" if failure.code == grpc.StatusCode.UNAVAILABLE else "embedder_error"
            DEGRADED.labels(reason).inc()
            log.warning("search without the embedder", extra={"reason": reason, "error": failure.message})
            missing = [n for n in dense if n not in lists]
            unavailable_signals.extend(SIGNALS[n] for n in missing)
            if len(missing) < len(dense):
                notices.append(f"the embedder failed: no {' or '.join(missing)} matching in these results")
            else:
                notices.append(EMBEDDER_DOWN)
            if not lists:
                # Only meaning-based signals were asked for and none could run: keyword matches
                # rather than nothing.
                lists["keyword"] = keyword_list or await self.store.call(
                    self._keyword_matches, keyword_query, depth, conditions
                )
                weights = {**weights, "keyword": 1.0}

        first = await self._accession_matches(query, lists.get("keyword", []))
        # One more than the page: whether a next page exists.
        fused = fuse(lists, weights, self.settings.fusion_k, first=first, limit=offset + size + 1)
        # Signals rank candidates by point key; only the page's objects are read.
        page = fused[offset : offset + size]
        stored = await self.store.call(self.store.store.get_by_keys, [h.id for h in page])
        page = [
            dataclasses.replace(h, id=stored[h.id].id, payload=stored[h.id].payload) for h in page if h.id in stored
        ]
        count_answer("Search", page)
        return search_pb2.SearchResponse(
            hits=[self._fused_hit(h) for h in page],
            page=common_pb2.PageInfo(
                next_page_token=str(offset + size) if len(fused) > offset + size else "", total_size=-1
            ),
            unavailable_signals=sorted(set(unavailable_signals)),
            notices=notices,
        )

    @staticmethod
    def _fused_hit(hit: FusedHit) -> search_pb2.SearchHit:
        return search_pb2.SearchHit(
            object=payload_to_object(hit.id, hit.payload),
            score=hit.score,
            signals=[
                search_pb2.SignalMatch(signal=SIGNALS[name], rank=match.rank, score=match.score)
                for name, match in sorted(hit.matches.items(), key=lambda m: SIGNALS[m[0]])
            ],
        )

    async def more_like_this(self, request: search_pb2.MoreLikeThisRequest) -> search_pb2.MoreLikeThisResponse:
        self.check_ready()
        museum_id = require_text(request.id, "id", MAX_ID_CHARS)
        k = bounded_int(request.k, "k", self.settings.default_page_size, self.settings.max_page_size)
        known_enum(request.space, search_pb2.VectorSpace, "space")
        conditions = to_conditions(request.filter)
        vectors = (await self.store.get_vectors([museum_id])).get(museum_id)
        if vectors is None:
            raise not_found(f"object {museum_id!r} is not in the collection")
        space = request.space
        if space == search_pb2.VECTOR_SPACE_UNSPECIFIED:
            space = search_pb2.VECTOR_SPACE_IMAGE if "image" in vectors else search_pb2.VECTOR_SPACE_TEXT
        name = "image" if space == search_pb2.VECTOR_SPACE_IMAGE else "text"
        if name not in vectors:
            other = "VECTOR_SPACE_TEXT" if name == "image" else "VECTOR_SPACE_IMAGE"
            raise failed_precondition(f"object {museum_id!r} has no {name} vector: ask for {other}")
        found = await self.store.query(name, vectors[name], limit=k, conditions=conditions, exclude_ids=[museum_id])
        count_answer("MoreLikeThis", found)
        signal = search_pb2.SIGNAL_VISUAL if name == "image" else search_pb2.SIGNAL_TEXT
        return search_pb2.MoreLikeThisResponse(hits=self._hits(found, signal, 1), space=space)

    async def recommend(self, request: search_pb2.RecommendRequest) -> search_pb2.RecommendResponse:
        self.check_ready()
        k = bounded_int(request.k, "k", self.settings.default_page_size, self.settings.max_page_size)
        known_enum(request.strategy, search_pb2.RecommendStrategy, "strategy")
        known_enum(request.space, search_pb2.VectorSpace, "space")
        liked = checked_ids(request.liked_ids, "liked_ids", MAX_EXAMPLE_IDS, required=True)
        disliked = checked_ids(request.disliked_ids, "disliked_ids", MAX_EXAMPLE_IDS)
        seen = checked_ids(request.seen_ids, "seen_ids", MAX_SEEN_IDS)
        both = sorted(set(liked) & set(disliked))
        if both:
            raise invalid_argument(f"ids both liked and disliked: {', '.join(both[:10])}")
        conditions = to_conditions(request.filter)
        vectors = await self.store.get_vectors([*liked, *disliked])
        unknown = [i for i in [*liked, *disliked] if i not in vectors]
        if unknown:
            raise not_found(f"unknown object ids: {', '.join(unknown[:10])}" + (" ..." if len(unknown) > 10 else ""))

        space = request.space
        if space == search_pb2.VECTOR_SPACE_UNSPECIFIED:
            with_image = all("image" in vectors[i] for i in liked)
            space = search_pb2.VECTOR_SPACE_IMAGE if with_image else search_pb2.VECTOR_SPACE_TEXT
        name = "image" if space == search_pb2.VECTOR_SPACE_IMAGE else "text"
        positives = [vectors[i][name] for i in liked if name in vectors[i]]
        if not positives:
            raise failed_precondition(f"none of the liked objects has a {name} vector: ask for VECTOR_SPACE_TEXT")
        dim = self.store.dimensions()[name]
        liked_rows = np.stack(positives)
        disliked_rows = np.stack([vectors[i][name] for i in disliked if name in vectors[i]] or [np.zeros((0, dim))])
        disliked_rows = disliked_rows.reshape(-1, dim)

        strategy = request.strategy or search_pb2.RECOMMEND_STRATEGY_BEST_SCORE
        exclude = list(dict.fromkeys([*seen, *liked, *disliked]))
        groups = cluster_likes(liked_rows) if request.diversify else [np.arange(len(liked_rows))]
        ranked_lists = []
        for group in groups:
            if strategy == search_pb2.RECOMMEND_STRATEGY_MEAN:
                query = mean_query(liked_rows[group], disliked_rows)
                found = await self.store.query(name, query, limit=k, conditions=conditions, exclude_ids=exclude)
            else:
                found = await self.store.recommend(
                    name, liked_rows[group], disliked_rows, limit=k, conditions=conditions, exclude_ids=exclude
                )
            ranked_lists.append(found)
        hits = interleave(ranked_lists, k)
        count_answer("Recommend", hits)
        signal = search_pb2.SIGNAL_VISUAL if name == "image" else search_pb2.SIGNAL_TEXT
        return search_pb2.RecommendResponse(hits=self._hits(hits, signal, 1), strategy=strategy, space=space)


def checked_ids(ids: Sequence[str], field: str, max_ids: int, required: bool = False) -> list[str]:
    """Non-blank, bounded ids, duplicates dropped (order kept)."""
    if required and not ids:
        raise invalid_argument(f"{field} is empty: like at least one object")
    if len(ids) > max_ids:
        raise invalid_argument(f"{field} has {len(ids)} ids: at most {max_ids}")
    for n, museum_id in enumerate(ids):
        if not museum_id.strip() or len(museum_id) > MAX_ID_CHARS:
            raise invalid_argument(f"{field}[{n}] is not an object id (blank or over {MAX_ID_CHARS} characters)")
    return list(dict.fromkeys(ids))


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    def __init__(self, service: SearchService) -> None:
        self.service = service

    async def Search(self, request: search_pb2.SearchRequest, context: grpc.aio.ServicerContext):
        return await self.service.search(request)

    async def Recommend(self, request: search_pb2.RecommendRequest, context: grpc.aio.ServicerContext):
        return await self.service.recommend(request)

    async def MoreLikeThis(self, request: search_pb2.MoreLikeThisRequest, context: grpc.aio.ServicerContext):
        return await self.service.more_like_this(request)

    async def GetObject(self, request: search_pb2.GetObjectRequest, context: grpc.aio.ServicerContext):
        return await self.service.get_object(request.id)

    async def UpsertObjects(self, request: search_pb2.UpsertObjectsRequest, context: grpc.aio.ServicerContext):
        return await self.service.upsert(request.objects)

    async def DeleteObjects(self, request: search_pb2.DeleteObjectsRequest, context: grpc.aio.ServicerContext):
        return search_pb2.DeleteObjectsResponse(deleted=await self.service.delete(request.ids))

    async def GetCollectionInfo(self, request: search_pb2.GetCollectionInfoRequest, context: grpc.aio.ServicerContext):
        return await self.service.collection_info()

    async def ListObjects(self, request: search_pb2.ListObjectsRequest, context: grpc.aio.ServicerContext):
        return await self.service.list_objects(request)

    async def CreateSnapshot(self, request: search_pb2.CreateSnapshotRequest, context: grpc.aio.ServicerContext):
        self.service.check_ready()
        return search_pb2.CreateSnapshotResponse(snapshot=await self.service.snapshots.create(request.name))

    async def ListSnapshots(self, request: search_pb2.ListSnapshotsRequest, context: grpc.aio.ServicerContext):
        return search_pb2.ListSnapshotsResponse(snapshots=await self.service.snapshots.list())

    async def DownloadSnapshot(self, request: search_pb2.DownloadSnapshotRequest, context: grpc.aio.ServicerContext):
        async for message in self.service.snapshots.download(request.name):
            yield message

    async def DeleteSnapshot(self, request: search_pb2.DeleteSnapshotRequest, context: grpc.aio.ServicerContext):
        await self.service.snapshots.delete(request.name)
        return search_pb2.DeleteSnapshotResponse()


def main(argv: Sequence[str] | None = None) -> None:
    settings = load_settings(
        SearchSettings, ENV_PREFIX, argv, description="Vitrine search: search, recommendation, collection updates."
    )
    try:
        service = SearchService(settings)
    except StoreError as exc:
        sys.exit(f"vitrine-search: {exc}")

    def register(server: grpc.aio.Server) -> list[str]:
        search_pb2_grpc.add_SearchServiceServicer_to_server(SearchServicer(service), server)
        return [search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name]

    writes = method_paths(search_pb2.DESCRIPTOR.services_by_name["SearchService"], WRITE_METHODS)
    asyncio.run(
        run_server("search", settings, register, startup=service.start, shutdown=service.close, write_methods=writes)
    )


if __name__ == "__main__":
    main()
