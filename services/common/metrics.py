"""Prometheus metrics every service exports, and the interceptor that records them.

The interceptor also maps `ServiceError` to gRPC statuses, turns unexpected exceptions into
INTERNAL (logged with the traceback, never leaked to the client), refuses calls whose deadline
has already passed, and answers request bytes that are not a valid message with INVALID_ARGUMENT
(grpcio's own answer would be UNKNOWN). And it writes the access log: one INFO line per call on
logger vitrine.access (method, status code, duration, peer), unless the access_log setting is off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from prometheus_client import Counter, Gauge, Histogram

from vitrine.common.errors import ServiceError, invalid_argument

log = logging.getLogger("vitrine.rpc")
# One INFO line per call (method, status, duration, peer) when the access_log setting is on.
access_log = logging.getLogger("vitrine.access")

REQUESTS = Counter(
    "vitrine_grpc_requests",
    "gRPC calls handled, by service, method and status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
LATENCY = Histogram(
    "vitrine_grpc_request_duration_seconds",
    "Time from receiving a gRPC call to its last response message.",
    ["grpc_service", "grpc_method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
IN_FLIGHT = Gauge("vitrine_grpc_in_flight_requests", "gRPC calls being handled now.", ["grpc_service"])
READY = Gauge("vitrine_ready", "1 when the service reports SERVING, 0 while starting or draining.", ["service"])


def _split(method: str) -> tuple[str, str]:
    # "/vitrine.v1.EmbedderService/EmbedTexts" -> ("vitrine.v1.EmbedderService", "EmbedTexts")
    _, service, name = method.split("/", 2)
    return service, name


def _code_of(context: grpc.aio.ServicerContext) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        return grpc.StatusCode(next(c for c in grpc.StatusCode if c.value[0] == code)).name
    return "OK"


class _Call:
    """Bookkeeping for one call: in-flight gauge, latency, status code, error mapping."""

    def __init__(self, method: str, context: grpc.aio.ServicerContext, log_access: bool) -> None:
        self.service, self.method = _split(method)
        self.context = context
        self.log_access = log_access
        self.code = "OK"
        self.start = time.perf_counter()
        IN_FLIGHT.labels(self.service).inc()

    async def check_deadline(self) -> None:
        remaining = self.context.time_remaining()
        if remaining is not None and remaining <= 0:
            self.code = "DEADLINE_EXCEEDED"
            await self.context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline expired before the call started")

    async def fail(self, exc: BaseException) -> None:
        """Map an exception to a status; always raises."""
        if isinstance(exc, ServiceError):
            self.code = exc.code.name
            # Rich details (BadRequest, ErrorInfo, RetryInfo) travel in the trailing metadata.
            await self.context.abort(exc.code, exc.message, trailing_metadata=exc.trailing_metadata())
        if isinstance(exc, grpc.aio.AbortError):
            self.code = _code_of(self.context)
            raise exc
        self.code = "INTERNAL"
        log.exception("unhandled error in %s/%s", self.service, self.method)
        await self.context.abort(grpc.StatusCode.INTERNAL, f"internal error in {self.method}; see server logs")

    def finish(self, cancelled: bool = False) -> None:
        if cancelled:
            self.code = "CANCELLED"
        elif self.code == "OK":
            self.code = _code_of(self.context)
        IN_FLIGHT.labels(self.service).dec()
        REQUESTS.labels(self.service, self.method, self.code).inc()
        elapsed = time.perf_counter() - self.start
        LATENCY.labels(self.service, self.method).observe(elapsed)
        if self.log_access:
            access_log.info(
                "rpc",
                extra={
                    "grpc_method": f"{self.service}/{self.method}",
                    "grpc_code": self.code,
                    "duration_ms": round(elapsed * 1000, 2),
                    "peer": self.context.peer(),
                },
            )


class Malformed:
    """What the deserializer gives for bytes that do not parse: the handler refuses it."""

    def __init__(self, error: str) -> None:
        self.error = error


def _safe(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as exc:
            return Malformed(str(exc))

    return parse


def _checked(request_or_iterator: Any) -> Any:
    """The request, or for a stream an iterator that refuses a malformed message when it comes."""
    if isinstance(request_or_iterator, Malformed):
        raise invalid_argument(f"the request is not a valid message of this method: {request_or_iterator.error}")
    if not hasattr(request_or_iterator, "__aiter__"):
        return request_or_iterator

    async def messages() -> AsyncIterator[Any]:
        async for message in request_or_iterator:
            yield _checked(message)

    return messages()


def _wrap_unary_response(
    behavior: Callable[..., Awaitable[Any]], method: str, log_access: bool
) -> Callable[..., Awaitable[Any]]:
    async def handler(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        call = _Call(method, context, log_access)
        cancelled = False
        try:
            await call.check_deadline()
            return await behavior(_checked(request_or_iterator), context)
        except BaseException as exc:
            if isinstance(exc, Exception):
                await call.fail(exc)
            cancelled = True
            raise
        finally:
            call.finish(cancelled)

    return handler


def _wrap_stream_response(
    behavior: Callable[..., AsyncIterator[Any]], method: str, log_access: bool
) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        call = _Call(method, context, log_access)
        cancelled = False
        try:
            await call.check_deadline()
            async for response in behavior(_checked(request_or_iterator), context):
                yield response
        except BaseException as exc:
            if isinstance(exc, Exception):
                await call.fail(exc)
            cancelled = True
            raise
        finally:
            call.finish(cancelled)

    return handler


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """Metrics, error mapping and (with `access_log`) one vitrine.access line per call. Health
    checks and reflection pass untouched: kubelet probes each pod every few seconds, which would
    fill the access log and the request counters with noise."""

    def __init__(self, access_log: bool = True) -> None:
        self.access_log = access_log

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(("/grpc.health", "/grpc.reflection")):
            return handler
        return rebuild_handler(
            handler,
            lambda behavior: _wrap_unary_response(behavior, method, self.access_log),
            lambda behavior: _wrap_stream_response(behavior, method, self.access_log),
            _safe(handler.request_deserializer),
        )


Behavior = Callable[..., Any]


def rebuild_handler(
    handler: grpc.RpcMethodHandler,
    unary_response: Callable[[Behavior], Behavior],
    stream_response: Callable[[Behavior], Behavior],
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """The same RPC (same kind, same serializers) with its behavior replaced: by
    `unary_response(behavior)` when it answers one message, `stream_response(behavior)` when it
    streams its answer. For interceptors."""
    kwargs = {
        "request_deserializer": request_deserializer or handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary_response(handler.unary_unary), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary_response(handler.stream_unary), **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream_response(handler.unary_stream), **kwargs)
    return grpc.stream_stream_rpc_method_handler(stream_response(handler.stream_stream), **kwargs)
