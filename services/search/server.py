"""The search service: `python -m vitrine.search.server`.

Start-up opens the vector store and waits for the embedder (its ListModels gives the vector
dimensions) before health turns SERVING. Every vector comes from the embedder; the store runs on
its own thread (see `store.AsyncStore`).

`SearchService` validates requests and delegates: reads to the query planner
(query_planner.py), writes to the indexing pipeline (indexing_pipeline.py), ListObjects to
listing.py and snapshots to snapshot_service.py; it writes the protobuf answers.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping, Sequence

import grpc
import numpy as np
from prometheus_client import Counter

from vitrine.common.embedder_client import EmbedderClient
from vitrine.common.errors import invalid_argument, not_found, unavailable
from vitrine.common.records import payload_to_object
from vitrine.common.security import method_paths
from vitrine.common.server import run_server
from vitrine.common.settings import load_settings
from vitrine.common.validation import bounded_int, known_enum, require_count, require_text
from vitrine.common.vocabulary import Vocabulary
from vitrine.search import keywords
from vitrine.search.fusion import FusedHit, check_weights
from vitrine.search.indexing_pipeline import MAX_EMBED_TEXT_CHARS, IndexingPipeline
from vitrine.search.listing import list_objects
from vitrine.search.machine_tags import MachineTagger
from vitrine.search.query_planner import QueryPlanner
from vitrine.search.refusals import MAX_ID_CHARS
from vitrine.search.settings import ENV_PREFIX, SearchSettings
from vitrine.search.snapshot_service import SnapshotService
from vitrine.search.store import AsyncStore, Conditions, ScoredObject, StoreError, open_store
from vitrine.v1 import common_pb2, embedder_pb2, search_pb2, search_pb2_grpc

log = logging.getLogger("vitrine.search")

QUERIES = Counter(
    "vitrine_search_queries",
    "Search, MoreLikeThis and Recommend answers, by whether they found anything (zero-result rate).",
    ["grpc_method", "result"],
)


def count_answer(method: str, hits: Sequence[object]) -> None:
    QUERIES.labels(method, "nonzero" if hits else "zero").inc()


# Search signals by their name in SearchRequest.signal_weights.
SIGNALS = {
    "text": search_pb2.SIGNAL_TEXT,
    "keyword": search_pb2.SIGNAL_KEYWORD,
    "image": search_pb2.SIGNAL_IMAGE,
    "tags": search_pb2.SIGNAL_TAGS,
}
SPACES = {search_pb2.VECTOR_SPACE_TEXT: "text", search_pb2.VECTOR_SPACE_IMAGE: "image"}

# RPCs that change the collection or copy it out whole: they need the auth token when one is configured.
WRITE_METHODS = ("UpsertObjects", "DeleteObjects", "CreateSnapshot", "DownloadSnapshot", "DeleteSnapshot")
MAX_DELETE_IDS = 1000
MAX_EXAMPLE_IDS = 100  # liked or disliked ids in one Recommend request
MAX_SEEN_IDS = 5000  # a long session; the client keeps it
# Preferred image models, best first, when the settings leave the choice to the service.
IMAGE_MODEL_PREFERENCE = ("clip", "efficientnet-lite0")


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
    """The service's state (store, embedder clients, models, tagger, vocabulary) and its RPCs:
    each validates its request and delegates."""

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
        # The subject vocabulary the tags signal indexes every label of a tag's term from (None: none).
        self.vocabulary: Vocabulary | None = None
        self.vocabulary_version = ""
        self.planner = QueryPlanner(self)
        self.pipeline = IndexingPipeline(self)
        self.snapshots = SnapshotService(self.store, settings.snapshot_folder, settings.qdrant_url)
        self.ready = False

    @property
    def embedder(self) -> EmbedderClient:
        if self._embedder is None:
            raise unavailable("the search service is starting; retry shortly")
        return self._embedder

    async def embed_query(self, model: str, text: str) -> np.ndarray:
        client = self._query_embedder
        if client is None:
            raise unavailable("the search service is starting; retry shortly")
        return (await client.embed_texts(model, [text[:MAX_EMBED_TEXT_CHARS]]))[0]

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
        self.pipeline.start_index_builds()
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
        await self.pipeline.close()
        await self.store.close()
        for client in (self._embedder, self._query_embedder, self.tagger):
            if client is not None:
                await client.close()

    def check_ready(self) -> None:
        if not self.ready:
            raise unavailable("the search service is starting (waiting for the embedder or the store); retry shortly")

    # -- write path ------------------------------------------------------------------------

    async def upsert(self, objects: Sequence[common_pb2.CollectionObject]) -> search_pb2.UpsertObjectsResponse:
        self.check_ready()
        return await self.pipeline.upsert(objects)

    async def delete(self, ids: Sequence[str]) -> int:
        self.check_ready()
        require_count(ids, "ids", MAX_DELETE_IDS)
        for i, museum_id in enumerate(ids):
            if not museum_id.strip():
                raise invalid_argument(f"ids[{i}] is empty")
        return await self.pipeline.delete(ids)

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

    async def search(self, request: search_pb2.SearchRequest) -> search_pb2.SearchResponse:
        self.check_ready()
        query = require_text(request.query, "query", self.settings.max_query_chars)
        size, offset = self._page(request.page)
        conditions = to_conditions(request.filter)
        weights = self._signal_weights(request.signal_weights)
        found = await self.planner.search(query, size, offset, conditions, weights)
        count_answer("Search", found.hits)
        return search_pb2.SearchResponse(
            hits=[_fused_hit(h) for h in found.hits],
            page=common_pb2.PageInfo(next_page_token=str(offset + size) if found.more else "", total_size=-1),
            unavailable_signals=sorted({SIGNALS[name] for name in found.unavailable}),
            notices=found.notices,
        )

    async def more_like_this(self, request: search_pb2.MoreLikeThisRequest) -> search_pb2.MoreLikeThisResponse:
        self.check_ready()
        museum_id = require_text(request.id, "id", MAX_ID_CHARS)
        k = bounded_int(request.k, "k", self.settings.default_page_size, self.settings.max_page_size)
        known_enum(request.space, search_pb2.VectorSpace, "space")
        conditions = to_conditions(request.filter)
        found, name = await self.planner.more_like_this(museum_id, k, SPACES.get(request.space), conditions)
        count_answer("MoreLikeThis", found)
        return search_pb2.MoreLikeThisResponse(hits=_hits(found, name), space=_space(name))

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
        strategy = request.strategy or search_pb2.RECOMMEND_STRATEGY_BEST_SCORE
        mean = strategy == search_pb2.RECOMMEND_STRATEGY_MEAN
        hits, name = await self.planner.recommend(
            liked, disliked, seen, k, SPACES.get(request.space), mean, request.diversify, conditions
        )
        count_answer("Recommend", hits)
        return search_pb2.RecommendResponse(hits=_hits(hits, name), strategy=strategy, space=_space(name))


def _space(vector_name: str) -> int:
    return search_pb2.VECTOR_SPACE_IMAGE if vector_name == "image" else search_pb2.VECTOR_SPACE_TEXT


def _fused_hit(hit: FusedHit) -> search_pb2.SearchHit:
    return search_pb2.SearchHit(
        object=payload_to_object(hit.id, hit.payload),
        score=hit.score,
        signals=[
            search_pb2.SignalMatch(signal=SIGNALS[name], rank=match.rank, score=match.score)
            for name, match in sorted(hit.matches.items(), key=lambda m: SIGNALS[m[0]])
        ],
    )


def _hits(found: Sequence[ScoredObject], vector_name: str) -> list[search_pb2.SearchHit]:
    """MoreLikeThis and Recommend hits: one vector space's matches, ranked from 1."""
    signal = search_pb2.SIGNAL_VISUAL if vector_name == "image" else search_pb2.SIGNAL_TEXT
    return [
        search_pb2.SearchHit(
            object=payload_to_object(hit.id, hit.payload),
            score=hit.score,
            signals=[search_pb2.SignalMatch(signal=signal, rank=1 + n, score=hit.score)],
        )
        for n, hit in enumerate(found)
    ]


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
