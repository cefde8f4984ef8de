"""Balanced channels (common/channels.open_channel) against servers built as every service builds
them (common/server.make_server): calls spread over every address a name resolves to, and a
server's max_connection_age_s makes clients reconnect (which is when they find new pods)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest

from vitrine.common.channels import open_channel
from vitrine.common.server import bind, grpc_options, make_server
from vitrine.common.settings import ServerSettings

METHOD = "/vitrine.test.Who/Am"


class Backend:
    """A server that answers its own name and remembers the client connections (peers) it saw."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.peers: Counter[str] = Counter()

    async def answer(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.peers[context.peer()] += 1
        return self.name.encode()


async def start(backend: Backend, settings: ServerSettings) -> tuple[grpc.aio.Server, int]:
    server = make_server(settings)
    handler = grpc.unary_unary_rpc_method_handler(backend.answer)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("vitrine.test.Who", {"Am": handler})])
    port = bind(server, settings)
    await server.start()
    return server, port


@pytest.fixture
async def two_backends() -> AsyncIterator[tuple[list[Backend], str]]:
    backends = [Backend("a"), Backend("b")]
    started = [await start(b, ServerSettings(port=0, metrics_port=0)) for b in backends]
    # The form a headless Service's DNS answer takes inside gRPC: one name, several addresses.
    yield backends, "ipv4:" + ",".join(f"127.0.0.1:{port}" for _, port in started)
    for server, _ in started:
        await server.stop(None)


async def test_calls_spread_over_every_address_of_the_name(two_backends: tuple[list[Backend], str]) -> None:
    backends, address = two_backends
    async with open_channel(address) as channel:
        who = channel.unary_unary(METHOD)
        # Until both connections are up, round_robin picks among those that are.
        warm_up = [(await who(b"", timeout=5)).decode() for _ in range(2)]
        for _ in range(50):
            if set(warm_up) == {"a", "b"}:
                break
            warm_up.append((await who(b"", timeout=5)).decode())
        answers = Counter([(await who(b"", timeout=5)).decode() for _ in range(20)])
    # round_robin: each backend gets half, not one pinned connection taking all 20.
    assert answers == {"a": 10, "b": 10}
    assert all(len(b.peers) == 1 for b in backends), "one connection to each backend"


async def test_max_connection_age_makes_the_client_reconnect() -> None:
    aged, forever = Backend("aged"), Backend("forever")
    servers = [
        await start(aged, ServerSettings(port=0, metrics_port=0, max_connection_age_s=0.3)),
        await start(forever, ServerSettings(port=0, metrics_port=0)),
    ]
    try:
        for backend, (_, port) in zip([aged, forever], servers, strict=True):
            async with open_channel(f"127.0.0.1:{port}") as channel:
                who = channel.unary_unary(METHOD)
                for _ in range(12):
                    assert await who(b"", timeout=5) == backend.name.encode()
                    await asyncio.sleep(0.1)
        # 1.2 s of calls: the aged server closed each connection after 0.3 s and the same channel
        # came back on a new one (a new client port); without an age limit, one connection serves all.
        assert len(aged.peers) >= 2, aged.peers
        assert sum(aged.peers.values()) == 12
        assert len(forever.peers) == 1, forever.peers
    finally:
        for server, _ in servers:
            await server.stop(None)


def test_server_options_accept_the_clients_keepalive_and_age_connections() -> None:
    options = dict(grpc_options(ServerSettings(max_connection_age_s=300)))
    assert options["grpc.max_connection_age_ms"] == 300_000
    assert options["grpc.max_connection_age_grace_ms"] >= 120_000  # never cuts a call Vitrine makes
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.http2.min_recv_ping_interval_without_data_ms"] < 30_000
    assert "grpc.max_connection_age_ms" not in dict(grpc_options(ServerSettings()))
