"""Rich error details (the `google.rpc.Status` error model): the one place Vitrine encodes and
decodes them.

A failed call carries, next to its code and message, a `google.rpc.Status` in the trailing
metadata key `grpc-status-details-bin` (what grpcio-status's `rpc_status` reads and writes, and
what grpc-go's `status.FromError`, grpc-java's `StatusProto.fromThrowable` and grpcurl show):

- `BadRequest` with one `FieldViolation` per wrong field (`objects[17].image`) on INVALID_ARGUMENT,
  and inside each `ObjectError` of UpsertObjects;
- `ErrorInfo` (reason in UPPER_SNAKE_CASE, domain "vitrine", a little metadata) and `RetryInfo`
  (how long to wait) on UNAVAILABLE and RESOURCE_EXHAUSTED, so clients back off for the time the
  service asks instead of guessing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "vitrine"
DETAILS_KEY = "grpc-status-details-bin"
# Detail types a Vitrine client understands; others (from proxies, other services) are ignored.
_KNOWN: tuple[type[Message], ...] = (
    error_details_pb2.BadRequest,
    error_details_pb2.ErrorInfo,
    error_details_pb2.RetryInfo,
)
# A server-sent delay is honoured up to this (a wrong or hostile value must not stall a client).
MAX_HONOURED_DELAY_S = 60.0


def bad_request(violations: Iterable[tuple[str, str]]) -> error_details_pb2.BadRequest:
    """(field path, what to fix) pairs as a BadRequest."""
    return error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in violations]
    )


def error_info(reason: str, metadata: Mapping[str, str] | None = None) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=dict(metadata or {}))


def retry_info(seconds: float) -> error_details_pb2.RetryInfo:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(seconds * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=delay)


def status(code: grpc.StatusCode, message: str, details: Sequence[Message] = ()) -> status_pb2.Status:
    """A google.rpc.Status (as in UpsertObjectsResponse.errors, or a call's own status)."""
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    return status_pb2.Status(code=code.value[0], message=message, details=packed)


def trailing_metadata(code: grpc.StatusCode, message: str, details: Sequence[Message]) -> tuple[tuple[str, bytes], ...]:
    """The trailing metadata that carries `details` with a failed call (empty without details)."""
    if not details:
        return ()
    return tuple(rpc_status.to_status(status(code, message, details)).trailing_metadata)


def unpack(found: status_pb2.Status) -> list[Message]:
    """The details of a Status that are of a type Vitrine knows."""
    out: list[Message] = []
    for holder in found.details:
        for kind in _KNOWN:
            if holder.Is(kind.DESCRIPTOR):
                message = kind()
                holder.Unpack(message)
                out.append(message)
                break
    return out


def status_of(error: Any) -> status_pb2.Status | None:
    """The google.rpc.Status a failed call carried (sync `grpc.RpcError` or `grpc.aio.AioRpcError`),
    or None when it carried none (or an unreadable one)."""
    metadata = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in metadata or ():
        if key == DETAILS_KEY:
            try:
                return status_pb2.Status.FromString(value)
            except DecodeError:
                return None
    return None


def details_of(error: Any) -> list[Message]:
    found = status_of(error)
    return unpack(found) if found is not None else []


def violations_of(source: Any) -> list[tuple[str, str]]:
    """(field, description) of every BadRequest violation of a failed call or a Status."""
    details = unpack(source) if isinstance(source, status_pb2.Status) else details_of(source)
    return [
        (v.field, v.description)
        for d in details
        if isinstance(d, error_details_pb2.BadRequest)
        for v in d.field_violations
    ]


def reason_of(error: Any) -> str:
    """The ErrorInfo reason of a failed call ('' without one)."""
    return next((d.reason for d in details_of(error) if isinstance(d, error_details_pb2.ErrorInfo)), "")


def retry_delay(error: Any) -> float | None:
    """How long the service asked to wait before retrying (RetryInfo), at most
    MAX_HONOURED_DELAY_S; None when it did not say."""
    for detail in details_of(error):
        if isinstance(detail, error_details_pb2.RetryInfo) and detail.HasField("retry_delay"):
            seconds = detail.retry_delay.ToNanoseconds() / 1e9
            return min(max(seconds, 0.0), MAX_HONOURED_DELAY_S)
    return None
