"""What every Vitrine server process does first and last, whatever it serves (gRPC or the
explorer's HTTP): structured logs, its settings logged with secrets masked, tracing when an OTLP
endpoint is configured, the Prometheus /metrics endpoint, readiness 0 until it serves, and a stop
event that SIGTERM / SIGINT set; at the end, the spans still queued are sent."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from collections.abc import Sequence

from prometheus_client import start_http_server

from vitrine.common.logs import configure_logging
from vitrine.common.metrics import READY
from vitrine.common.settings import ProcessSettings
from vitrine.common.tracing import configure_tracing, shutdown_tracing

log = logging.getLogger("vitrine.server")


def start_process(service: str, settings: ProcessSettings, secrets: Sequence[str]) -> None:
    """Logging, the starting line (the `secrets` settings shown as *** when set), tracing, metrics.
    Servers and channels made after this get the tracing interceptors."""
    configure_logging(service, settings.log_level, settings.log_format)
    shown = {k: ("***" if k in secrets and v else v) for k, v in dataclasses.asdict(settings).items()}
    log.info("starting", extra={"settings": str(shown)})
    configure_tracing(service)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host)
    READY.labels(service).set(0)


def stop_process() -> None:
    """The last step of a server process: flush the spans still queued to the collector."""
    shutdown_tracing()


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (graceful shutdown begins when it is)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
