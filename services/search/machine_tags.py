"""Machine tags: the tagger's subject suggestions for each ingested object, indexed for search.

Curators search for subjects ("fish", "Cornwall", "woman, tree") that most catalogue texts never
name: a sketchbook page titled "Study" may well show fish. The tagger predicts the subjects
curators would give an object from its metadata (and image), so at ingest the search service asks
it for each object's best suggestions and indexes their labels, weighted by the tagger's
calibrated score, in the `tags` sparse vector (keywords.tag_vector), next to the curators' own
subjects. The Search RPC then has a fourth signal, SIGNAL_TAGS.

The tagger is optional (VITRINE_SEARCH_TAGGER_ADDRESS empty: no machine tags). When it is set
but does not answer, objects are stored without machine tags and marked partial, so the next
ingest of the same objects tags them; the write itself never fails for want of a tagger. Each
object keeps the tagger version that tagged it: once the tagger serves another model version, the
next ingest re-tags the objects (unchanged otherwise), so search follows the model curators see.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import grpc
import numpy as np
from prometheus_client import Counter

from vitrine.common.channels import open_channel
from vitrine.v1 import common_pb2, tagger_pb2, tagger_pb2_grpc

log = logging.getLogger("vitrine.search.machine_tags")

TAGGED = Counter(
    "vitrine_search_machine_tags_total",
    "Objects sent to the tagger at ingest, by result: tagged, rejected (the tagger cannot tag the "
    "object, e.g. no text), unavailable (stored without machine tags, tagged on the next ingest).",
    ["result"],
)
for _result in ("tagged", "rejected", "unavailable"):
    TAGGED.labels(_result)  # exported at 0 from the start, so dashboards see every series


@dataclass(frozen=True)
class MachineTags:
    """The tagger's answer for one object: (label, calibrated score) best first, and its version."""

    tags: tuple[tuple[str, float], ...]
    version: str


@dataclass(frozen=True)
class TextVectors:
    """Text vectors of objects by id, all from one embedder model."""

    model: str
    rows: Mapping[str, np.ndarray]


# How long the tagger's model version is trusted before it is asked again (a reload takes effect
# for ingests after that).
VERSION_TTL_S = 30.0


class MachineTagger:
    """Asks the tagger service for objects' tags through StreamSuggestTags (the tagger batches a
    stream's objects through its models), `top_k` suggestions an object scoring `min_score` or more."""

    def __init__(
        self,
        address: str,
        top_k: int,
        min_score: float,
        timeout_s: float = 120.0,
        max_message_mb: int = 32,
        tls_ca_file: str = "",
    ) -> None:
        self.address = address
        self.tls_ca_file = tls_ca_file
        self.top_k = top_k
        self.min_score = min_score
        self.timeout_s = timeout_s
        self.max_message_mb = max_message_mb
        self._channel: grpc.aio.Channel | None = None
        self._stub: tagger_pb2_grpc.TaggerServiceStub | None = None
        self._version = ""
        self._version_checked = -VERSION_TTL_S

    def _open(self) -> tagger_pb2_grpc.TaggerServiceStub:
        # Created on first use: a grpc.aio channel belongs to the event loop that makes it.
        if self._stub is None:
            self._channel = open_channel(self.address, self.tls_ca_file, self.max_message_mb)
            self._stub = tagger_pb2_grpc.TaggerServiceStub(self._channel)
        return self._stub

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel, self._stub = None, None

    async def version(self) -> str:
        """The tagger's current model version ("" when the tagger does not answer or has no
        model), asked at most every VERSION_TTL_S seconds."""
        now = time.monotonic()
        if now - self._version_checked < VERSION_TTL_S:
            return self._version
        try:
            info = await self._open().GetTaggerInfo(tagger_pb2.GetTaggerInfoRequest(), timeout=5.0)
            self._version = info.model_version
        except grpc.aio.AioRpcError as exc:
            log.warning("tagger version unknown", extra={"address": self.address, "code": exc.code().name})
            self._version = ""
        self._version_checked = now
        return self._version

    def _request(self, obj: common_pb2.CollectionObject, vectors: TextVectors) -> tagger_pb2.SuggestTagsRequest:
        request = tagger_pb2.SuggestTagsRequest(
            object=obj, k=self.top_k, threshold=self.min_score, omit_explanations=True
        )
        vector = vectors.rows.get(obj.id)
        if vector is not None:  # the tagger uses it when it embeds with the same model
            request.text_vector.CopyFrom(
                common_pb2.Vector(values=vector.tolist(), model=vectors.model, dimension=len(vector))
            )
        return request

    async def _stream(self, objects: Sequence[common_pb2.CollectionObject], vectors: TextVectors) -> list[MachineTags]:
        async def requests() -> AsyncIterator[tagger_pb2.StreamSuggestTagsRequest]:
            for obj in objects:
                yield tagger_pb2.StreamSuggestTagsRequest(request=self._request(obj, vectors))

        answers: list[MachineTags] = []
        call = self._open().StreamSuggestTags(requests(), timeout=self.timeout_s)
        async for message in call:
            answer = message.response
            tags = tuple((s.tag.label or s.tag.id, float(s.score)) for s in answer.suggestions)
            answers.append(MachineTags(tags, answer.model_version))
        if len(answers) != len(objects):
            raise RuntimeError(f"the tagger answered {len(answers)} of {len(objects)} objects")
        return answers

    async def tag(
        self, objects: Sequence[common_pb2.CollectionObject], vectors: TextVectors | None = None
    ) -> dict[str, MachineTags] | None:
        """Machine tags by object id; objects the tagger rejects are left out. None when the tagger
        is unavailable (or failed): the caller stores the objects without machine tags. `vectors`:
        the text vectors search computed for the objects, sent along so the tagger need not embed
        the same texts again."""
        vectors = vectors or TextVectors("", {})
        if not objects:
            return {}
        try:
            try:
                answers = await self._stream(objects, vectors)
                found = {o.id: a for o, a in zip(objects, answers, strict=True)}
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                # One object the tagger cannot tag fails the whole stream: ask one by one.
                found = {}
                for obj in objects:
                    try:
                        found[obj.id] = (await self._stream([obj], vectors))[0]
                    except grpc.aio.AioRpcError as one:
                        if one.code() != grpc.StatusCode.INVALID_ARGUMENT:
                            raise
                        TAGGED.labels("rejected").inc()
        except (TimeoutError, grpc.aio.AioRpcError, RuntimeError) as exc:
            detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
            code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
            log.warning(
                "tagger unavailable: objects stored without machine tags (tagged on the next ingest)",
                extra={"address": self.address, "code": code, "error": detail, "objects": len(objects)},
            )
            TAGGED.labels("unavailable").inc(len(objects))
            if isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE:
                await self.close()  # a fresh channel next time, not gRPC's reconnect back-off
            return None
        TAGGED.labels("tagged").inc(len(found))
        return found
