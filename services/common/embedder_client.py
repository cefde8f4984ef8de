"""Client of the embedder service, shared by search, tagger and the offline jobs.

It splits large inputs into requests the embedder accepts, retries while the embedder is
unavailable (with back-off, or after the delay the embedder's RetryInfo asks for) and returns numpy
arrays. Failures surface as `ServiceError(UNAVAILABLE)` so callers can degrade or report them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vitrine.common import rich_errors
from vitrine.common.channels import open_channel
from vitrine.common.errors import ServiceError, unavailable
from vitrine.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc

log = logging.getLogger("vitrine.embedder_client")


_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}
# Answered as UNAVAILABLE (retry later); CANCELLED: the call was on a channel that another call
# closed after the embedder stopped answering.
_UNREACHABLE = {*_RETRYABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
# The embedder answers, only not in time (or says its queue is full): busy, not down.
_BUSY = {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}


class EmbedderClient:
    def __init__(
        self,
        address: str,
        timeout_s: float = 60.0,
        retries: int = 3,
        chunk_size: int = 64,
        max_message_mb: int = 32,
        tls_ca_file: str = "",
    ) -> None:
        self.address = address
        self.tls_ca_file = tls_ca_file
        self.timeout_s = timeout_s
        self.retries = retries
        self.chunk_size = chunk_size
        self.max_message_mb = max_message_mb
        self._channel: grpc.aio.Channel | None = None

    def _open(self) -> grpc.aio.Channel:
        # Created on first use, not in __init__: a grpc.aio channel belongs to the event loop
        # that is running when it is made, and clients are often built before asyncio.run().
        if self._channel is None:
            # round_robin: with a headless Service's dns:/// name, calls spread over every replica.
            self._channel = open_channel(self.address, self.tls_ca_file, self.max_message_mb)
            self._stub = embedder_pb2_grpc.EmbedderServiceStub(self._channel)
            self._health = health_pb2_grpc.HealthStub(self._channel)
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def is_serving(self) -> bool:
        self._open()
        try:
            answer = await self._health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
        except grpc.aio.AioRpcError:
            return False
        return answer.status == health_pb2.HealthCheckResponse.SERVING

    async def wait_until_serving(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not await self.is_serving():
            if loop.time() > deadline:
                raise unavailable(f"embedder at {self.address} did not become SERVING within {timeout_s:.0f} s")
            await asyncio.sleep(0.5)

    async def _call(self, method: str, request: object) -> object:
        self._open()
        rpc = getattr(self._stub, method)
        delay = 0.2
        for attempt in range(self.retries + 1):
            try:
                return await rpc(request, timeout=self.timeout_s)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _RETRYABLE or attempt == self.retries:
                    if exc.code() in _UNREACHABLE:
                        # A fresh channel next time: gRPC would otherwise wait out its reconnect
                        # back-off (up to minutes) before noticing that the embedder is back.
                        await self.close()
                        raise self._unreachable(exc) from exc
                    raise ServiceError(exc.code(), f"embedder: {exc.details()}", rich_errors.details_of(exc)) from exc
                asked = rich_errors.retry_delay(exc)
                # The embedder's own RetryInfo (a full queue drains in about a batch's time) beats
                # the guess, but never past this client's time budget for one call.
                wait = min(asked, self.timeout_s) if asked is not None else delay
                log.warning(
                    "embedder call failed, retrying",
                    extra={"method": method, "code": exc.code().name, "attempt": attempt + 1, "wait_s": wait},
                )
                await asyncio.sleep(wait)
                delay *= 2
        raise AssertionError("unreachable")

    def _unreachable(self, exc: grpc.aio.AioRpcError) -> ServiceError:
        """UNAVAILABLE either way, with a reason that tells a busy embedder (it answered "queue
        full", or not within this client's time) from one that is down or unreachable."""
        code = exc.code()
        if code in _BUSY:
            return unavailable(
                f"embedder at {self.address} is busy: no answer within {self.timeout_s:g} s "
                f"({code.name}: {exc.details()}); retry later",
                "EMBEDDER_BUSY",
                metadata={"embedder_code": code.name},
            )
        return unavailable(
            f"embedder at {self.address} unavailable ({code.name}: {exc.details()}); retry later",
            "EMBEDDER_UNAVAILABLE",
            metadata={"embedder_code": code.name},
        )

    async def list_models(self) -> embedder_pb2.ListModelsResponse:
        return await self._call("ListModels", embedder_pb2.ListModelsRequest())  # type: ignore[return-value]

    async def embed_texts(self, model: str, texts: Sequence[str]) -> np.ndarray:
        chunks = [texts[i : i + self.chunk_size] for i in range(0, len(texts), self.chunk_size)]
        answers = await asyncio.gather(
            *(self._call("EmbedTexts", embedder_pb2.EmbedTextsRequest(model=model, texts=list(c))) for c in chunks)
        )
        return _stack(answers)

    async def embed_images(self, model: str, images: Sequence[common_pb2.Image]) -> np.ndarray:
        chunks = [images[i : i + self.chunk_size] for i in range(0, len(images), self.chunk_size)]
        answers = await asyncio.gather(
            *(self._call("EmbedImages", embedder_pb2.EmbedImagesRequest(model=model, images=list(c))) for c in chunks)
        )
        return _stack(answers)


def _stack(answers: Sequence[object]) -> np.ndarray:
    rows = [np.asarray(v.values, dtype=np.float32) for a in answers for v in a.vectors]  # type: ignore[attr-defined]
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack(rows)
