"""A real OTLP/gRPC trace receiver for tests: what an OpenTelemetry collector is to the services.

It serves opentelemetry.proto.collector.trace.v1.TraceService on a loopback port and keeps every
span it is sent, so a test reads back what the processes exported instead of asserting from
inside one of them.

with running_collector() as collector:
    start services with collector.env ...
    spans = collector.wait_for(lambda spans: ..., timeout_s=10)
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


@dataclass(frozen=True)
class ReceivedSpan:
    service: str  # the resource's service.name
    name: str
    kind: int  # trace_pb2.Span.SpanKind
    trace_id: str  # hex, as logs and tracing backends show it
    span_id: str
    parent_span_id: str  # "" for a root span
    attributes: dict[str, object]

    @property
    def kind_name(self) -> str:
        return trace_pb2.Span.SpanKind.Name(self.kind).removeprefix("SPAN_KIND_")


def _value(any_value: object) -> object:
    field = any_value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(any_value, field) if field else None


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self.endpoint = ""

    @property
    def env(self) -> dict[str, str]:
        """The environment that makes a Vitrine process export its spans here, quickly."""
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name", "")),
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self._lock:
            self._spans += received
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def wait_for(self, done: Callable[[list[ReceivedSpan]], bool], timeout_s: float = 15.0) -> list[ReceivedSpan]:
        """The spans received once `done(spans)` holds; AssertionError with what came after
        `timeout_s` otherwise."""
        deadline = time.monotonic() + timeout_s
        while True:
            spans = self.spans()
            if done(spans):
                return spans
            if time.monotonic() > deadline:
                shown = "\n".join(f"  {s.service} {s.kind_name} {s.name} {s.trace_id}" for s in spans[-40:])
                raise AssertionError(f"the spans expected did not arrive in {timeout_s} s; last received:\n{shown}")
            time.sleep(0.1)


@contextlib.contextmanager
def running_collector() -> Iterator[Collector]:
    collector = Collector()
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    collector.endpoint = f"http://127.0.0.1:{port}"
    try:
        yield collector
    finally:
        server.stop(None)
