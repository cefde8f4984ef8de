"""One bootstrap for every Vitrine gRPC server.

`run_server` starts a grpc.aio server with: the service's servicers, grpc.health.v1 (NOT_SERVING
until `startup` has finished, e.g. models loaded; a service may hold its own named status back
further with `Health`), server reflection (for grpcurl), the metrics
and error-mapping interceptor, message-size and concurrency limits, a Prometheus /metrics HTTP
endpoint, and graceful shutdown on SIGTERM/SIGINT (stop accepting, drain in-flight calls for
`grace_seconds`, then run `shutdown`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from vitrine.common.channels import KEEPALIVE_TIME_MS
from vitrine.common.metrics import READY, ObservabilityInterceptor
from vitrine.common.process import start_process, stop_on_signals, stop_process
from vitrine.common.security import TokenInterceptor, server_credentials
from vitrine.common.settings import ServerSettings
from vitrine.common.tracing import grpc_server_interceptors

log = logging.getLogger("vitrine.server")

# Adds the service's servicers to the server; returns the full names of the services it added
# (e.g. ["vitrine.v1.EmbedderService"]) for health checking and reflection.
Register = Callable[[grpc.aio.Server], list[str]]
Hook = Callable[[], Awaitable[None]]

# How long calls in flight on a connection closed for its age may still take: longer than any
# call Vitrine makes (the longest deadline is search's 120 s tagger stream at ingest), so the
# rotation never cuts one; the old connection only lingers meanwhile.
MAX_CONNECTION_AGE_GRACE_S = 130


class Health:
    """The server's grpc.health.v1 statuses: NOT_SERVING until start-up has finished, then SERVING
    for the whole server ("") and each service, except the `gated` service names: each of those
    is SERVING only while its service says it can answer (`set_gate`; e.g. the tagger's while a
    model is loaded), so a readiness probe on the name can wait for that while "" says the process
    is up. A gate set during start-up takes effect when start-up finishes."""

    def __init__(self, gated: Sequence[str] = ()) -> None:
        self.servicer = health.aio.HealthServicer()
        self.names: list[str] = []
        self.started = False
        self.gates = dict.fromkeys(gated, False)

    def status(self, name: str) -> int:
        ok = self.started and self.gates.get(name, True)
        return health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING

    async def publish(self) -> None:
        for name in dict.fromkeys(["", *self.names, *self.gates]):
            await self.servicer.set(name, self.status(name))

    async def set_gate(self, name: str, ok: bool) -> None:
        if name not in self.gates:
            raise KeyError(f"{name!r} is not a gated service of this server (gated: {sorted(self.gates)})")
        self.gates[name] = ok
        await self.publish()


def grpc_options(settings: ServerSettings) -> list[tuple[str, int]]:
    max_bytes = settings.max_message_mb * 1024 * 1024
    options = [
        ("grpc.max_receive_message_length", max_bytes),
        ("grpc.max_send_message_length", max_bytes),
        ("grpc.so_reuseport", 0),
        # The clients' keepalive pings (channels.KEEPALIVE_TIME_MS), idle connections included;
        # gRPC's defaults would answer them with GOAWAY "too_many_pings".
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_TIME_MS // 2),
    ]
    if settings.max_connection_age_s > 0:
        # Closing each connection after a while (GOAWAY: new calls go to a new connection) makes
        # clients resolve the name again and connect to the replicas that came up since.
        options += [
            ("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_S * 1000),
        ]
    return options


def make_server(settings: ServerSettings, write_methods: Sequence[str] = ()) -> grpc.aio.Server:
    """The grpc.aio server with Vitrine's interceptors (observability outermost, so refused
    calls are counted too; the write token when configured) and limits. With tracing on, the span
    interceptor comes first, so the access log line of a call carries its trace id."""
    interceptors: list[grpc.aio.ServerInterceptor] = [
        *grpc_server_interceptors(),
        ObservabilityInterceptor(access_log=settings.access_log),
    ]
    if settings.auth_token:
        interceptors.append(TokenInterceptor(settings.auth_token, write_methods))
    return grpc.aio.server(
        interceptors=interceptors,
        options=grpc_options(settings),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )


def bind(server: grpc.aio.Server, settings: ServerSettings) -> int:
    """Open the settings' port, with TLS when a certificate is configured; returns the port."""
    address = f"{settings.host}:{settings.port}"
    try:
        credentials = server_credentials(settings.tls_cert_file, settings.tls_key_file)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"TLS: {exc}") from exc
    port = server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
    if port == 0:
        raise SystemExit(f"cannot bind gRPC port {address}")
    return port


async def run_server(
    service: str,
    settings: ServerSettings,
    register: Register,
    startup: Hook | None = None,
    shutdown: Hook | None = None,
    write_methods: Sequence[str] = (),
    health_state: Health | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT. `startup` runs after the port is open (health NOT_SERVING
    meanwhile); a failing startup is logged and the process exits with status 1. With an
    `auth_token` setting, the `write_methods` (full method names) need it. `health_state` lets
    the service gate its own named status (see `Health`)."""
    start_process(service, settings, secrets=("auth_token",))

    server = make_server(settings, write_methods)
    names = register(server)
    health_state = health_state or Health()
    health_state.names = names
    health_servicer = health_state.servicer
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)

    await health_state.publish()
    address = f"{settings.host}:{settings.port}"
    bind(server, settings)
    await server.start()
    log.info(
        "listening",
        extra={
            "address": address,
            "metrics_port": settings.metrics_port,
            "tls": bool(settings.tls_cert_file),
            "write_methods_need_token": bool(settings.auth_token),
        },
    )

    stop = stop_on_signals()

    startup_task = asyncio.create_task(startup()) if startup else None
    failed = False
    try:
        if startup_task is not None:
            done, _ = await asyncio.wait(
                {startup_task, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
            if startup_task in done and startup_task.exception() is not None:
                # Logged as one structured line (with the traceback in "exc"), then exit 1.
                failed = True
                log.error("start-up failed: %s", startup_task.exception(), exc_info=startup_task.exception())
                stop.set()
        if not stop.is_set():
            health_state.started = True
            await health_state.publish()
            READY.labels(service).set(1)
            log.info("serving", extra={"address": address})
            await stop.wait()
    finally:
        log.info("draining", extra={"grace_seconds": settings.grace_seconds})
        READY.labels(service).set(0)
        if startup_task is not None and not startup_task.done():
            startup_task.cancel()
            with contextlib.suppress(BaseException):
                await startup_task
        await health_servicer.enter_graceful_shutdown()
        await server.stop(settings.grace_seconds)
        if shutdown is not None:
            await shutdown()
        log.info("stopped")
        stop_process()
    if failed:
        raise SystemExit(1)
