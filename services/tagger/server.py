"""The tagger's gRPC servicer and entry point (`python -m vitrine.tagger.server`).

Foundation state: the service starts, loads the vocabulary, waits for the embedder and answers
GetTaggerInfo and input validation. Suggestions need a trained model (the tagger issue, #12);
until one exists SuggestTags answers FAILED_PRECONDITION saying so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import grpc

from vitrine.common.embedder_client import EmbedderClient
from vitrine.common.errors import failed_precondition, invalid_argument, unavailable, unimplemented
from vitrine.common.server import run_server
from vitrine.common.settings import load_settings
from vitrine.common.validation import bounded_int
from vitrine.tagger.settings import ENV_PREFIX, TaggerSettings
from vitrine.tagger.vocabulary import Vocabulary
from vitrine.v1 import common_pb2, tagger_pb2, tagger_pb2_grpc

log = logging.getLogger("vitrine.tagger")

TEXT_FIELDS = ("title", "artist", "date", "medium", "classification", "description")


def object_text(obj: common_pb2.CollectionObject) -> str:
    """The object's text as the models read it (empty when it has none)."""
    parts = [getattr(obj, f).strip() for f in TEXT_FIELDS]
    parts += [m.strip() for m in obj.movements]
    return ". ".join(p for p in parts if p)


class Tagger:
    def __init__(self, settings: TaggerSettings) -> None:
        self.settings = settings
        self.embedder = EmbedderClient(settings.embedder_address, settings.embedder_timeout_s)
        self.vocabulary: Vocabulary | None = None

    async def start(self) -> None:
        self.vocabulary = await asyncio.to_thread(Vocabulary.load, self.settings.vocabulary)
        log.info("vocabulary loaded", extra={"terms": len(self.vocabulary), "path": self.settings.vocabulary})
        await self.embedder.wait_until_serving(self.settings.wait_for_embedder_s)
        models = {m.name for m in (await self.embedder.list_models()).models}
        if self.settings.text_model not in models:
            raise RuntimeError(f"the embedder has no {self.settings.text_model!r} model (it has {sorted(models)})")

    async def close(self) -> None:
        await self.embedder.close()

    def check_request(self, request: tagger_pb2.SuggestTagsRequest) -> None:
        if self.vocabulary is None:
            raise unavailable("the tagger is still starting; retry in a few seconds")
        if not request.object.id.strip():
            raise invalid_argument("object.id is empty: give the object's identifier")
        text = object_text(request.object)
        has_image = request.object.image.WhichOneof("source") is not None
        if not text and not has_image:
            raise invalid_argument(
                f"object {request.object.id!r} has no usable text (title, artist, medium, ...) and no image"
            )
        if len(text) > self.settings.max_text_chars:
            raise invalid_argument(f"object text has {len(text)} characters: at most {self.settings.max_text_chars}")
        bounded_int(request.k, "k", default=10, max_value=100)
        if not 0.0 <= request.threshold <= 1.0:
            raise invalid_argument(f"threshold is {request.threshold}: it must be between 0 and 1")
        if request.vocabulary and request.vocabulary != "default":
            raise invalid_argument(f"unknown vocabulary {request.vocabulary!r}: this tagger knows 'default'")


class TaggerServicer(tagger_pb2_grpc.TaggerServiceServicer):
    def __init__(self, tagger: Tagger) -> None:
        self.tagger = tagger

    async def SuggestTags(self, request: tagger_pb2.SuggestTagsRequest, context: grpc.aio.ServicerContext):
        self.tagger.check_request(request)
        raise failed_precondition("no trained tagger model is loaded yet: training arrives with the tagger issue (#12)")

    async def GetTaggerInfo(self, request: tagger_pb2.GetTaggerInfoRequest, context: grpc.aio.ServicerContext):
        vocabulary = self.tagger.vocabulary
        return tagger_pb2.GetTaggerInfoResponse(
            model_loaded=False,
            vocabulary_size=len(vocabulary) if vocabulary else 0,
            status_message="no trained model yet: training and suggestions arrive with the tagger issue (#12)",
        )

    async def StreamSuggestTags(self, request_iterator, context: grpc.aio.ServicerContext):
        raise unimplemented("StreamSuggestTags arrives with the tagger issue (#12)")
        yield  # pragma: no cover - makes this an async generator

    async def SubmitFeedback(self, request, context: grpc.aio.ServicerContext):
        raise unimplemented("SubmitFeedback arrives with the tagger-in-production issue (#6)")

    async def StreamSubmitFeedback(self, request_iterator, context: grpc.aio.ServicerContext):
        raise unimplemented("StreamSubmitFeedback arrives with the tagger-in-production issue (#6)")

    async def Audit(self, request, context: grpc.aio.ServicerContext):
        raise unimplemented("Audit arrives with the tagger-in-production issue (#6)")

    async def ReloadModel(self, request, context: grpc.aio.ServicerContext):
        raise unimplemented("ReloadModel arrives with the tagger-in-production issue (#6)")


def main(argv: Sequence[str] | None = None) -> None:
    settings = load_settings(TaggerSettings, ENV_PREFIX, argv, description="Vitrine tagger: subject-tag suggestions.")
    tagger = Tagger(settings)

    def register(server: grpc.aio.Server) -> list[str]:
        tagger_pb2_grpc.add_TaggerServiceServicer_to_server(TaggerServicer(tagger), server)
        return [tagger_pb2.DESCRIPTOR.services_by_name["TaggerService"].full_name]

    asyncio.run(run_server("tagger", settings, register, startup=tagger.start, shutdown=tagger.close))


if __name__ == "__main__":
    main()
