"""The one way a Vitrine process opens a gRPC channel to another Vitrine service.

Every channel balances its calls over all the addresses its name resolves to (round_robin): with
`dns:///<release>-search-headless:50053`, a headless Service's DNS answer lists every ready pod,
so calls spread over the replicas instead of riding one connection pinned to one pod. New pods
are found when the resolver looks again, which a server's `max_connection_age_s` forces by
closing connections now and then (see server.grpc_options). Keepalive pings find a connection to
a vanished pod within about 40 s, so round_robin stops picking it before a call's deadline runs
out on it. With tracing on, each call gets a client span and carries the trace context
(`traceparent`) to the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from vitrine.common.tracing import grpc_client_interceptors

# A ping on an idle connection every 30 s, answered within 10 s or the connection is dropped. The
# servers accept pings this often (server.grpc_options); gRPC's defaults would refuse them and
# close the connection with "too_many_pings".
KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000


def channel_options(max_message_mb: float) -> list[tuple[str, Any]]:
    max_bytes = int(max_message_mb * 1024 * 1024)
    return [
        ("grpc.max_receive_message_length", max_bytes),
        ("grpc.max_send_message_length", max_bytes),
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def open_channel(
    address: str,
    tls_ca_file: str = "",
    max_message_mb: float = 32,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """A grpc.aio channel to `address` (host:port, dns:///name:port, or an ipv4:a:p,b:q list):
    round_robin over what it resolves to, keepalive, message limits of `max_message_mb` both ways,
    TLS verified against the CA bundle `tls_ca_file` (plaintext when empty), tracing when on.
    `options` are added last, so they win. Make it inside the event loop that will use it."""
    merged = list(dict([*channel_options(max_message_mb), *options]).items())
    interceptors = grpc_client_interceptors() or None
    if not tls_ca_file:
        return grpc.aio.insecure_channel(address, options=merged, interceptors=interceptors)
    credentials = grpc.ssl_channel_credentials(Path(tls_ca_file).read_bytes())
    return grpc.aio.secure_channel(address, credentials, options=merged, interceptors=interceptors)
