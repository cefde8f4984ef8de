"""Logs for operators: the trace id in JSON log lines (common/logs.py), one vitrine.access line per
RPC (common/metrics.ObservabilityInterceptor, on a server built by make_server) and per explorer
HTTP request, switchable with the access_log setting; probes stay out of the INFO access log."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from aiohttp.test_utils import TestClient, TestServer
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider

from vitrine.common import tracing
from vitrine.common.errors import invalid_argument
from vitrine.common.logs import JsonFormatter
from vitrine.common.server import bind, make_server
from vitrine.common.settings import ServerSettings
from vitrine.explorer.server import make_app
from vitrine.explorer.settings import ExplorerSettings
from vitrine.launcher import free_port


def test_json_lines_carry_the_ids_of_the_active_span() -> None:
    formatter = JsonFormatter("tagger")
    record = logging.makeLogRecord({"name": "vitrine.x", "levelname": "INFO", "msg": "hello"})
    outside = json.loads(formatter.format(record))
    assert "trace_id" not in outside and "span_id" not in outside
    # A local provider: the span is active in this context without installing tracing globally.
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner") as span:
        inside = json.loads(formatter.format(record))
    context = span.get_span_context()
    assert inside["trace_id"] == format(context.trace_id, "032x") and len(inside["trace_id"]) == 32
    assert inside["span_id"] == format(context.span_id, "016x")  # the innermost span
    assert inside["msg"] == "hello" and inside["service"] == "tagger"


def test_tracing_stays_off_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tracing.ENDPOINT_ENV, raising=False)
    monkeypatch.delenv(tracing.TRACES_ENDPOINT_ENV, raising=False)
    assert tracing.configure_tracing("search") is False
    assert not tracing.enabled()
    assert tracing.grpc_server_interceptors() == [] and tracing.grpc_client_interceptors() == []
    assert tracing.current_ids() is None
    tracing.shutdown_tracing()  # nothing to flush, nothing raised


async def _ok(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b"ok"


async def _bad(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise invalid_argument("k must be positive")


@pytest.fixture(params=[True, False], ids=["access_log", "no_access_log"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, bool]]:
    settings = ServerSettings(port=0, metrics_port=0, access_log=request.param)
    server = make_server(settings)
    handlers = {name: grpc.unary_unary_rpc_method_handler(f) for name, f in [("Ok", _ok), ("Bad", _bad)]}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("vitrine.test.Probe", handlers)])
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = bind(server, settings)
    await server.start()
    yield f"127.0.0.1:{port}", request.param
    await server.stop(None)


async def test_one_access_line_per_rpc_with_method_code_duration_and_peer(
    server: tuple[str, bool], caplog: pytest.LogCaptureFixture
) -> None:
    address, enabled = server
    caplog.set_level(logging.DEBUG, logger="vitrine.access")
    async with grpc.aio.insecure_channel(address) as channel:
        assert await channel.unary_unary("/vitrine.test.Probe/Ok")(b"", timeout=5) == b"ok"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await channel.unary_unary("/vitrine.test.Probe/Bad")(b"", timeout=5)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # Health checks (kubelet probes) are not access-logged.
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    lines = [r for r in caplog.records if r.name == "vitrine.access"]
    if not enabled:
        assert lines == []
        return
    assert [(r.levelname, r.getMessage()) for r in lines] == [("INFO", "rpc"), ("INFO", "rpc")]
    ok, bad = lines
    assert (ok.grpc_method, ok.grpc_code) == ("vitrine.test.Probe/Ok", "OK")  # type: ignore[attr-defined]
    assert (bad.grpc_method, bad.grpc_code) == ("vitrine.test.Probe/Bad", "INVALID_ARGUMENT")  # type: ignore[attr-defined]
    for line in lines:
        assert line.peer.startswith("ipv4:127.0.0.1:")  # type: ignore[attr-defined]
        assert isinstance(line.duration_ms, float) and 0 <= line.duration_ms < 5000  # type: ignore[attr-defined]


@pytest.mark.parametrize("enabled", [True, False], ids=["access_log", "no_access_log"])
async def test_one_access_line_per_explorer_request_and_probes_at_debug(
    enabled: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens at the search address: the object route answers 503, quickly.
    settings = ExplorerSettings(
        search_address=f"127.0.0.1:{free_port()}", tagger_address="", rpc_timeout_s=5, access_log=enabled
    )
    caplog.set_level(logging.DEBUG, logger="vitrine.access")
    async with TestClient(TestServer(make_app(settings))) as client:
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/api/objects/T%201")).status == 503
    lines = [r for r in caplog.records if r.name == "vitrine.access"]
    if not enabled:
        assert lines == []
        return
    probe, api = lines
    assert probe.levelname == "DEBUG" and probe.route == "/healthz"  # type: ignore[attr-defined]
    assert api.levelname == "INFO" and api.getMessage() == "request"
    fields = {k: getattr(api, k) for k in ("method", "route", "path", "status")}
    assert fields == {"method": "GET", "route": "/api/objects/{id}", "path": "/api/objects/T 1", "status": 503}
    assert api.peer == "127.0.0.1" and api.duration_ms >= 0  # type: ignore[attr-defined]
