"""OpenTelemetry tracing, on when the standard OTEL_EXPORTER_OTLP_ENDPOINT names an OTLP/gRPC
collector (e.g. http://otel-collector:4317; an http:// endpoint is plaintext, https:// TLS) and off
otherwise.

On: each process has a TracerProvider whose resource says `service.name=vitrine-<service>`
(OTEL_SERVICE_NAME wins), spans leave in batches (OTEL_BSP_* tune the batching), W3C trace context
travels in gRPC metadata and HTTP headers (`traceparent`), and the standard OTEL_TRACES_SAMPLER /
OTEL_TRACES_SAMPLER_ARG choose how many traces are kept (default: every one, or as the caller
decided). Off: nothing is installed, no interceptor is added to servers or channels, and the OTel
API's no-op tracer answers the few calls that remain (a log line's trace id is then absent).

The SDK and the exporter are imported only when tracing is on, so a process without a collector
pays for the API alone.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from opentelemetry import trace

log = logging.getLogger("vitrine.tracing")

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
# Spans still queued at shutdown get this long to leave; a collector that is down must not hold
# a draining pod past its termination grace period.
FLUSH_TIMEOUT_MS = 5000


def endpoint(environ: dict[str, str] | None = None) -> str:
    environ = dict(os.environ) if environ is None else environ
    return environ.get(TRACES_ENDPOINT_ENV) or environ.get(ENDPOINT_ENV) or ""


def enabled() -> bool:
    """Whether this process exports spans: `configure_tracing` installed an SDK provider (the API's
    default is a proxy that hands out no-op tracers)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def service_name(service: str) -> str:
    return os.environ.get("OTEL_SERVICE_NAME") or f"vitrine-{service}"


def configure_tracing(service: str) -> bool:
    """Install the tracer provider and OTLP exporter when an endpoint is configured; True if it did.
    Called once at process start, before servers and channels are made (they add their
    interceptors only when tracing is on)."""
    if not endpoint() or enabled():
        return enabled()
    # Imported here: processes without a collector never load the SDK or the exporter.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.propagate import set_global_textmap
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    resource = Resource.create(
        {
            "service.name": service_name(service),
            "service.namespace": "vitrine",
            # The pod's name in Kubernetes: which replica served the span.
            "service.instance.id": socket.gethostname(),
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    if not os.environ.get("OTEL_PROPAGATORS"):
        set_global_textmap(TraceContextTextMapPropagator())
    log.info("tracing on", extra={"otlp_endpoint": endpoint(), "service_name": service_name(service)})
    return True


def shutdown_tracing() -> None:
    """Export the spans still queued (within FLUSH_TIMEOUT_MS), then stop the exporter."""
    provider: Any = trace.get_tracer_provider()
    if not enabled() or not hasattr(provider, "shutdown"):
        return
    provider.force_flush(FLUSH_TIMEOUT_MS)
    provider.shutdown()


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the span active in this context, or None outside any span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def grpc_server_interceptors() -> list[Any]:
    """The server span interceptor (it reads `traceparent` from the call's metadata) when tracing
    is on, else none. Health checks and reflection get no spans: kubelet probes every pod every
    few seconds, which would bury the traces people look for."""
    if not enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor
    from opentelemetry.instrumentation.grpc.filters import any_of, health_check, negate, service_prefix

    return [aio_server_interceptor(filter_=negate(any_of(health_check(), service_prefix("grpc.reflection"))))]


def grpc_client_interceptors() -> list[Any]:
    """Client span interceptors that put the caller's trace context into each call's metadata,
    when tracing is on; health checks excluded as on the server."""
    if not enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors
    from opentelemetry.instrumentation.grpc.filters import health_check, negate

    return list(aio_client_interceptors(filter_=negate(health_check())))
