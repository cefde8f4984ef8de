"""The embedder's gRPC servicer and entry point (`vitrine-embedder`, `python -m vitrine.embedder.server`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import torch
from prometheus_client import Gauge

from vitrine.common.errors import invalid_argument, unavailable
from vitrine.common.server import run_server
from vitrine.common.settings import load_settings
from vitrine.common.validation import bounded_int, require_count, require_text
from vitrine.embedder.batcher import MicroBatcher
from vitrine.embedder.models.base import IMAGE, TEXT, EmbeddingModel
from vitrine.embedder.models.efficientnet import EfficientNetLite0
from vitrine.embedder.models.images import decode_image, read_uri
from vitrine.embedder.models.registry import build_models, load_all
from vitrine.embedder.settings import ENV_PREFIX, EmbedderSettings
from vitrine.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc

MODEL_LOAD_SECONDS = Gauge("vitrine_embedder_model_load_seconds", "Time it took to load each model.", ["model"])
MODEL_INFO = Gauge(
    "vitrine_embedder_model_info",
    "Loaded models (value 1).",
    ["model", "dimension", "device", "dtype", "backend", "test_model"],
)

_MODALITY = {TEXT: embedder_pb2.MODALITY_TEXT, IMAGE: embedder_pb2.MODALITY_IMAGE}
_STREAM_WINDOW = 256  # items a StreamEmbed call may have in flight before it stops reading
LOADING = "the embedder is still loading its models; retry in a few seconds"
LOADING_RETRY_S = 5.0  # loading takes tens of seconds: asking sooner only adds load


class Embedder:
    """Models, their batchers and the input checks; the servicer below only translates messages."""

    def __init__(self, settings: EmbedderSettings) -> None:
        self.settings = settings
        self.models: dict[str, EmbeddingModel] = build_models(settings)
        self.batchers: dict[tuple[str, str], MicroBatcher] = {}
        # One thread runs the models (torch parallelises inside an op); decoding images runs
        # in a small pool so it overlaps with the forward passes.
        self.model_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")
        self.decode_pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="decode")
        self.image_roots = [Path(p.strip()) for p in settings.image_roots.split(",") if p.strip()]
        self.ready = False

    async def load(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.model_thread, load_all, self.models)
        for name, model in self.models.items():
            MODEL_LOAD_SECONDS.labels(name).set(model.load_seconds)
            info = model.info()
            MODEL_INFO.labels(
                name, info["dimension"], info["device"], info["dtype"], info["backend"], info["test_model"]
            ).set(1)
            run = {TEXT: model.embed_texts, IMAGE: model.embed_images}
            for modality in model.modalities:
                batcher = MicroBatcher(
                    name,
                    modality,
                    run[modality],
                    self.model_thread,
                    self.batch_size(model),
                    self.settings.max_wait_ms / 1000,
                    self.settings.max_queue,
                )
                batcher.start()
                self.batchers[(name, modality)] = batcher
        self.ready = True

    def batch_size(self, model: EmbeddingModel) -> int:
        return self.settings.max_batch_size or model.batch_size

    async def close(self) -> None:
        for batcher in self.batchers.values():
            await batcher.stop()
        self.model_thread.shutdown(wait=False, cancel_futures=True)
        self.decode_pool.shutdown(wait=False, cancel_futures=True)

    def model_for(self, name: str, modality: str) -> EmbeddingModel:
        if not self.ready:
            raise unavailable(LOADING, "MODELS_LOADING", LOADING_RETRY_S)
        model = self.models.get(name)
        if model is None:
            known = ", ".join(self.models) or "none"
            hint = (
                " (text-to-image search needs CLIP weights: set VITRINE_EMBEDDER_CLIP_MODEL)" if name == "clip" else ""
            )
            raise invalid_argument(f"model {name!r} is not loaded; loaded models: {known}{hint}")
        if modality not in model.modalities:
            able = [n for n, m in self.models.items() if modality in m.modalities]
            raise invalid_argument(
                f"model {name!r} does not embed {modality}s; use one of: {', '.join(able) or 'none'}"
            )
        return model

    async def embed_texts(self, name: str, texts: Sequence[str]) -> np.ndarray:
        self.model_for(name, TEXT)
        require_count(texts, "texts", self.settings.max_batch_items)
        checked = [require_text(t, f"texts[{i}]", self.settings.max_text_chars) for i, t in enumerate(texts)]
        return await self.batchers[(name, TEXT)].submit(checked)

    async def prepare_image(self, model: EmbeddingModel, image: common_pb2.Image, field: str) -> torch.Tensor:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.decode_pool, self._prepare_image_sync, model, image, field)

    def _prepare_image_sync(self, model: EmbeddingModel, image: common_pb2.Image, field: str) -> torch.Tensor:
        max_bytes = int(self.settings.max_image_mb * 1024 * 1024)
        source = image.WhichOneof("source")
        if source is None:
            raise invalid_argument(f"{field} has neither data nor uri")
        if source == "uri":
            data = read_uri(image.uri, self.image_roots, max_bytes, self.settings.fetch_timeout_s, f"{field}.uri")
        else:
            data = image.data
        return model.prepare_image(decode_image(data, max_bytes, self.settings.max_image_pixels, field))

    async def embed_images(self, name: str, images: Sequence[common_pb2.Image]) -> np.ndarray:
        model = self.model_for(name, IMAGE)
        require_count(images, "images", self.settings.max_batch_items)
        prepared = await asyncio.gather(
            *(self.prepare_image(model, image, f"images[{i}]") for i, image in enumerate(images))
        )
        return await self.batchers[(name, IMAGE)].submit(prepared)

    def model_infos(self) -> list[embedder_pb2.ModelInfo]:
        infos = []
        for model in self.models.values():
            info = model.info()
            infos.append(
                embedder_pb2.ModelInfo(
                    name=info["name"],
                    modalities=[_MODALITY[m] for m in info["modalities"]],
                    dimension=info["dimension"],
                    device=info["device"],
                    dtype=info["dtype"],
                    source=info["source"],
                    test_model=info["test_model"],
                    max_batch_size=self.batch_size(model),
                    load_seconds=info["load_seconds"],
                    backend=info["backend"],
                )
            )
        return infos


def _vectors(model: str, rows: np.ndarray) -> list[common_pb2.Vector]:
    dimension = int(rows.shape[1])
    return [common_pb2.Vector(values=row.tolist(), model=model, dimension=dimension) for row in rows]


class EmbedderServicer(embedder_pb2_grpc.EmbedderServiceServicer):
    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    async def EmbedTexts(self, request: embedder_pb2.EmbedTextsRequest, context: grpc.aio.ServicerContext):
        rows = await self.embedder.embed_texts(request.model, request.texts)
        return embedder_pb2.EmbedTextsResponse(
            vectors=_vectors(request.model, rows), model=request.model, dimension=rows.shape[1]
        )

    async def EmbedImages(self, request: embedder_pb2.EmbedImagesRequest, context: grpc.aio.ServicerContext):
        rows = await self.embedder.embed_images(request.model, request.images)
        return embedder_pb2.EmbedImagesResponse(
            vectors=_vectors(request.model, rows), model=request.model, dimension=rows.shape[1]
        )

    async def StreamEmbed(
        self, request_iterator: AsyncIterator[embedder_pb2.StreamEmbedRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[embedder_pb2.StreamEmbedResponse]:
        # Items are submitted as they arrive (so they batch with each other and with other
        # callers) and answered in arrival order; at most _STREAM_WINDOW are in flight.
        pending: asyncio.Queue[asyncio.Future[embedder_pb2.StreamEmbedResponse] | None] = asyncio.Queue(_STREAM_WINDOW)

        async def one(item: embedder_pb2.StreamEmbedRequest) -> embedder_pb2.StreamEmbedResponse:
            kind = item.WhichOneof("input")
            if kind == "text":
                rows = await self.embedder.embed_texts(item.model, [item.text])
            elif kind == "image":
                rows = await self.embedder.embed_images(item.model, [item.image])
            else:
                raise invalid_argument(f"request {item.request_id!r} has neither text nor image")
            return embedder_pb2.StreamEmbedResponse(request_id=item.request_id, vector=_vectors(item.model, rows)[0])

        async def read() -> None:
            try:
                async for item in request_iterator:
                    await pending.put(asyncio.create_task(one(item)))
            except Exception as exc:
                # A message that does not parse (INVALID_ARGUMENT from the interceptor) must end
                # the stream now, after the answers before it; raised in this task alone it would
                # go unseen and the caller would wait for its deadline.
                failed: asyncio.Future[embedder_pb2.StreamEmbedResponse] = asyncio.get_running_loop().create_future()
                failed.set_exception(exc)
                await pending.put(failed)
            await pending.put(None)

        reader = asyncio.create_task(read())
        try:
            while (task := await pending.get()) is not None:
                yield await task
            await reader
        finally:
            reader.cancel()
            while not pending.empty():
                leftover = pending.get_nowait()
                if leftover is not None:
                    leftover.cancel()

    async def LabelImage(self, request: embedder_pb2.LabelImageRequest, context: grpc.aio.ServicerContext):
        model = self.embedder.models.get("efficientnet-lite0")
        if not isinstance(model, EfficientNetLite0):
            raise invalid_argument("image labels need the efficientnet-lite0 model (VITRINE_EMBEDDER_MODELS)")
        self.embedder.model_for(model.name, IMAGE)
        top_k = bounded_int(request.top_k, "top_k", default=5, max_value=50)
        prepared = await self.embedder.prepare_image(model, request.image, "image")
        loop = asyncio.get_running_loop()
        labels = await loop.run_in_executor(self.embedder.model_thread, model.label_image, prepared, top_k)
        return embedder_pb2.LabelImageResponse(
            labels=[embedder_pb2.ImageLabel(label=label, probability=p) for label, p in labels],
            model=model.name,
            machine_generated=True,
        )

    async def ListModels(self, request: embedder_pb2.ListModelsRequest, context: grpc.aio.ServicerContext):
        if not self.embedder.ready:
            raise unavailable(LOADING, "MODELS_LOADING", LOADING_RETRY_S)
        clip = self.embedder.models.get("clip")
        return embedder_pb2.ListModelsResponse(
            models=self.embedder.model_infos(),
            text_to_image_available=clip is not None and not clip.test_model,
            max_batch_items=self.embedder.settings.max_batch_items,
        )


def main(argv: Sequence[str] | None = None) -> None:
    try:
        settings = load_settings(
            EmbedderSettings, ENV_PREFIX, argv, description="Vitrine embedder: texts and images to vectors."
        )
        embedder = Embedder(settings)
    except ValueError as exc:
        sys.exit(f"vitrine-embedder: {exc}")

    def register(server: grpc.aio.Server) -> list[str]:
        embedder_pb2_grpc.add_EmbedderServiceServicer_to_server(EmbedderServicer(embedder), server)
        return [embedder_pb2.DESCRIPTOR.services_by_name["EmbedderService"].full_name]

    asyncio.run(run_server("embedder", settings, register, startup=embedder.load, shutdown=embedder.close))


if __name__ == "__main__":
    main()
