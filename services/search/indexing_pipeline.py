"""The write path: UpsertObjects and DeleteObjects past validation. Each object is checked
(refusals.py), skipped when unchanged since it was stored, embedded (text, and its image in
calls under the message limit), tagged by the tagger when one is configured (machine_tags.py),
turned into keyword and tag vectors (keywords.py) and stored; the embedded store's HNSW index is
rebuilt when enough was written (indexing.py). Works over the async store interface.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc
import numpy as np

from vitrine.common.embedder_client import EmbedderClient
from vitrine.common.errors import ServiceError
from vitrine.common.objects import object_text
from vitrine.common.records import content_hash, object_to_payload
from vitrine.common.vocabulary import Vocabulary
from vitrine.search import keywords
from vitrine.search.indexing import IndexBuilder
from vitrine.search.machine_tags import MachineTagger, MachineTags, TextVectors
from vitrine.search.refusals import Refusals, check_objects
from vitrine.search.settings import SearchSettings
from vitrine.search.store import TAG_TERMS_FIELD, AsyncStore, StoredPoint
from vitrine.v1 import common_pb2, search_pb2

log = logging.getLogger("vitrine.search")

# Models truncate to a few hundred tokens anyway; this keeps requests within the embedder's limit.
MAX_EMBED_TEXT_CHARS = 4000
# Images of one EmbedImages call stay under the gRPC message limit (32 MiB by default).
MAX_IMAGE_BYTES_PER_CALL = 16 * 1024 * 1024
# Stored instead of the content hash when part of an object could not be embedded (its image),
# so that the next ingest of the same object tries again rather than counting it unchanged.
PARTIAL_PREFIX = "partial:"

_EMBEDDER_INDEX = re.compile(r"\bimages\[\d+\]")


class IndexingContext(Protocol):
    """What the pipeline reads from the service: the store, the settings, and the embedder,
    models, tagger and vocabulary chosen at start-up (read at each call)."""

    store: AsyncStore
    settings: SearchSettings
    text_model: str
    image_model: str
    tagger: MachineTagger | None
    vocabulary: Vocabulary | None
    vocabulary_version: str

    @property
    def embedder(self) -> EmbedderClient: ...


@dataclass
class _Embedded:
    """What the embedder and the tagger gave for the changed objects of one upsert."""

    vectors: dict[str, dict[str, np.ndarray]]
    # Objects stored without their image, and why.
    image_problems: dict[str, str]
    # None: the tagger failed (the objects are stored untagged, as partial).
    machine_tags: dict[str, MachineTags] | None


def _has_image(obj: common_pb2.CollectionObject) -> bool:
    return obj.image.WhichOneof("source") is not None


class IndexingPipeline:
    def __init__(self, context: IndexingContext) -> None:
        self.context = context
        self.indexer: IndexBuilder | None = None

    def start_index_builds(self) -> None:
        """Rebuild the HNSW index in the background when due, where the store needs it built."""
        settings = self.context.settings
        if self.context.store.supports_index_builds and settings.index_min_new_objects:
            self.indexer = IndexBuilder(self.context.store, settings.index_min_new_objects, settings.index_idle_s)
            self.indexer.start()

    async def close(self) -> None:
        if self.indexer is not None:
            await self.indexer.close()

    def _wrote(self) -> None:
        if self.indexer is not None:
            self.indexer.wrote()

    async def _embed_images(self, images: list[common_pb2.Image]) -> list[np.ndarray | str]:
        """One vector per image, or the reason it could not be embedded. A bad image fails the
        whole embedder call, so a failed group is retried image by image."""
        embedder, model = self.context.embedder, self.context.image_model
        results: list[np.ndarray | str] = []
        group: list[common_pb2.Image] = []
        size = 0

        async def flush() -> None:
            nonlocal group, size
            if not group:
                return
            try:
                results.extend(await embedder.embed_images(model, group))
            except ServiceError as exc:
                if exc.code != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                for image in group:
                    try:
                        results.append((await embedder.embed_images(model, [image]))[0])
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
        """Store every valid object that changed; the answer reports each refused one."""
        refusals = check_objects(objects, self.context.settings.max_objects_per_upsert)
        if refusals.all_refused():
            raise refusals.error()
        index_of = {o.id: i for i, o in enumerate(objects) if i not in refusals}
        objects = [objects[i] for i in index_of.values()]
        hashes = self._content_hashes(objects)
        # Objects tagged by another model version than the tagger's now are tagged again.
        tagger = self.context.tagger
        tagger_version = await tagger.version() if tagger else ""
        changed = await self._changed(objects, hashes, tagger_version)
        answer = search_pb2.UpsertObjectsResponse(unchanged=len(objects) - len(changed))

        embedded = await self._embed(changed, refusals, index_of)
        points = []
        for o in changed:
            if index_of[o.id] in refusals:
                continue
            if not embedded.vectors[o.id]:
                refusals.nothing_to_embed(index_of[o.id], embedded.image_problems.get(o.id, ""))
                continue
            points.append(self._point(o, embedded, hashes[o.id], tagger_version))
        if refusals.all_refused():
            raise refusals.error()
        await self.context.store.upsert(points)
        self._wrote()
        answer.upserted = len(points)
        refusals.fill(answer)
        if embedded.image_problems:
            log.warning(
                "objects stored without their image",
                extra={
                    "count": len(embedded.image_problems),
                    "first": str(next(iter(embedded.image_problems.items()))),
                },
            )
        log.info(
            "upsert",
            extra={"upserted": answer.upserted, "unchanged": answer.unchanged, "refused": len(answer.errors)},
        )
        return answer

    def _content_hashes(self, objects: Sequence[common_pb2.CollectionObject]) -> dict[str, str]:
        context = self.context
        # The keyword format (and whether machine tags are wanted) is hashed in too: when it
        # changes, stored objects are re-indexed.
        indexing = [context.text_model, context.image_model, keywords.VERSION, "machine-tags" if context.tagger else ""]
        if context.vocabulary_version:  # only then: without a vocabulary, stored hashes stay as they were
            indexing.append(context.vocabulary_version)
        return {obj.id: content_hash(obj, indexing) for obj in objects}

    async def _changed(
        self, objects: Sequence[common_pb2.CollectionObject], hashes: Mapping[str, str], tagger_version: str
    ) -> list[common_pb2.CollectionObject]:
        """The objects not stored as they are (content, models, tagger version)."""
        stored = await self.context.store.get(list(hashes), payload_fields=["content_hash", "machine_tags_version"])
        return [
            o
            for o in objects
            if o.id not in stored
            or stored[o.id].payload.get("content_hash") != hashes[o.id]
            or (tagger_version and stored[o.id].payload.get("machine_tags_version") != tagger_version)
        ]

    async def _embed(
        self, changed: Sequence[common_pb2.CollectionObject], refusals: Refusals, index_of: Mapping[str, int]
    ) -> _Embedded:
        """Text and image vectors of the changed objects (asked for at once), then their machine tags;
        an image too large or not embeddable is refused (objects[i].image)."""
        context, settings, tagger = self.context, self.context.settings, self.context.tagger
        max_image_bytes = int(settings.max_image_mb * 1024 * 1024)
        texts = {o.id: object_text(o)[:MAX_EMBED_TEXT_CHARS] for o in changed}
        image_problems: dict[str, str] = {}
        with_image: list[common_pb2.CollectionObject] = []
        for o in changed:
            if not _has_image(o):
                continue
            if not context.image_model:
                image_problems[o.id] = "the embedder has no image model"
            elif o.image.HasField("data") and len(o.image.data) > max_image_bytes:
                refusals.image_too_large(index_of[o.id], settings.max_image_mb)
            else:
                with_image.append(o)

        text_ids = [i for i, t in texts.items() if t]
        text_rows, image_rows = await asyncio.gather(
            context.embedder.embed_texts(context.text_model, [texts[i] for i in text_ids])
            if text_ids
            else asyncio.sleep(0, result=[]),
            self._embed_images([o.image for o in with_image]) if with_image else asyncio.sleep(0, result=[]),
        )
        vectors: dict[str, dict[str, np.ndarray]] = {o.id: {} for o in changed}
        for museum_id, row in zip(text_ids, text_rows, strict=True):
            vectors[museum_id]["text"] = row
        # After the embedder, not beside it: the tagger is given the text vectors just computed
        # instead of sending every text through the embedder a second time.
        text_vectors = TextVectors(context.text_model, {i: v["text"] for i, v in vectors.items() if "text" in v})
        machine_tags = await tagger.tag(changed, text_vectors) if tagger and changed else {}
        for o, result in zip(with_image, image_rows, strict=True):
            if isinstance(result, str):
                refusals.image_not_embedded(index_of[o.id], result, has_text=bool(texts[o.id]))
            else:
                vectors[o.id]["image"] = result
        return _Embedded(vectors, image_problems, machine_tags)

    def _point(
        self, o: common_pb2.CollectionObject, embedded: _Embedded, hash_: str, tagger_version: str
    ) -> StoredPoint:
        """The object as stored: its dense vectors, keyword and tag vectors, and payload."""
        vocabulary, vectors, machine_tags = self.context.vocabulary, embedded.vectors[o.id], embedded.machine_tags
        # Partial: stored without its image or machine tags; the next ingest tries again.
        partial = o.id in embedded.image_problems or machine_tags is None
        payload = object_to_payload(o, (PARTIAL_PREFIX if partial else "") + hash_, "image" in vectors)
        sparse = keywords.object_vectors(o)
        tags = (machine_tags or {}).get(o.id)
        if tags is not None:
            payload["machine_tags"] = [[label, round(score, 4)] for label, score in tags.tags]
        if machine_tags is not None:
            # Also on objects the tagger rejected (no text to tag): they are not asked again
            # until the version changes.
            payload["machine_tags_version"] = tags.version if tags else tagger_version
        machine = tags.tags if tags else ()
        tag_vector = keywords.tag_vector(o.subjects, machine, vocabulary)
        if tag_vector is not None:
            sparse[keywords.TAGS] = tag_vector
            payload[TAG_TERMS_FIELD] = keywords.tag_term_ids(o.subjects, machine, vocabulary)
        return StoredPoint(o.id, {**vectors, **sparse}, payload)

    async def delete(self, ids: Sequence[str]) -> int:
        deleted = await self.context.store.delete(list(ids))
        self._wrote()
        return deleted
