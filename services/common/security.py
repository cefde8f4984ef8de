"""Optional access control for every Vitrine server: a shared token on write RPCs, and TLS.

Reads stay open (a museum's website searches without credentials); writes change the collection
or the model (ingest, upsert, delete, feedback, reload), so when a token is configured they need
the gRPC metadata `authorization: Bearer <token>` and are refused with UNAUTHENTICATED otherwise.
The token is compared in constant time and never logged. TLS: given a certificate and key (PEM,
as a Kubernetes TLS secret mounts them) the server listens with TLS instead of plaintext; clients
of other Vitrine services then verify it against `tls_ca_file`.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import grpc

from vitrine.common.errors import ServiceError
from vitrine.common.metrics import rebuild_handler

AUTH_HEADER = "authorization"


def unauthenticated(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.UNAUTHENTICATED, message)


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls of the `protected` methods (full names, "/vitrine.v1.SearchService/UpsertObjects")
    that do not carry `authorization: Bearer <token>`. Placed inside the observability
    interceptor, so refusals are counted and logged like any other error."""

    def __init__(self, token: str, protected: Collection[str]) -> None:
        self._expected = f"Bearer {token}".encode()
        self.protected = frozenset(protected)

    def _allowed(self, metadata: Any) -> bool:
        given = next((value for key, value in metadata or () if key == AUTH_HEADER), "")
        if isinstance(given, str):
            given = given.encode()
        return hmac.compare_digest(given, self._expected)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method not in self.protected or self._allowed(handler_call_details.invocation_metadata):
            return handler
        name = method.rsplit("/", 1)[-1]
        message = (
            f"{name} changes data and needs the service's token: send the metadata "
            f"'{AUTH_HEADER}: Bearer <token>' (grpcurl -H 'authorization: Bearer ...')"
        )

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
            raise unauthenticated(message)

        async def deny_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            raise unauthenticated(message)
            yield  # an async generator, as stream handlers are

        return rebuild_handler(handler, lambda _: deny, lambda _: deny_stream)


def server_credentials(cert_file: str, key_file: str) -> grpc.ServerCredentials | None:
    """TLS credentials from PEM files, or None for plaintext when neither is set."""
    if not cert_file and not key_file:
        return None
    if not (cert_file and key_file):
        raise ValueError("TLS needs both a certificate and a key file (tls_cert_file and tls_key_file)")
    return grpc.ssl_server_credentials([(Path(key_file).read_bytes(), Path(cert_file).read_bytes())])


def method_paths(service: Any, methods: Sequence[str]) -> list[str]:
    """Full method names ("/vitrine.v1.SearchService/UpsertObjects") of a service descriptor's
    `methods`, as interceptors see them."""
    return [f"/{service.full_name}/{method}" for method in methods]


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying `token` (empty when there is none)."""
    return ((AUTH_HEADER, f"Bearer {token}"),) if token else ()
