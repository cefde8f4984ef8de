"""Errors that map onto gRPC status codes.

Business code raises `ServiceError` (or one of the helpers below) with a message that says what to
fix; the server interceptor turns it into the gRPC status, with its rich `details` (see
rich_errors.py) in the trailing metadata. Code never needs the grpc context to report bad input,
and the same functions work from CLIs. UNAVAILABLE and RESOURCE_EXHAUSTED always carry an
ErrorInfo (why) and a RetryInfo (when to try again).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import grpc
from google.protobuf.message import Message

from vitrine.common import rich_errors

# Waits a client is asked for: a service starting or a dependency gone usually takes seconds to
# come back; a full queue drains in about a batch's time.
UNAVAILABLE_RETRY_S = 2.0
EXHAUSTED_RETRY_S = 1.0


class ServiceError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, details: Sequence[Message] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = tuple(details)

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return rich_errors.trailing_metadata(self.code, self.message, self.details)


def invalid_argument(message: str, violations: Iterable[tuple[str, str]] = ()) -> ServiceError:
    """INVALID_ARGUMENT; `violations` ((field path, what to fix) pairs) go in a BadRequest."""
    found = list(violations)
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, message, [rich_errors.bad_request(found)] if found else [])


def already_exists(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.ALREADY_EXISTS, message)


def not_found(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.FAILED_PRECONDITION, message)


def _retryable(
    code: grpc.StatusCode, message: str, reason: str, retry_s: float | None, metadata: Mapping[str, str] | None
) -> ServiceError:
    """With an ErrorInfo, and a RetryInfo unless `retry_s` is None (waiting would not help)."""
    details: list[Message] = [rich_errors.error_info(reason, metadata)]
    if retry_s is not None:
        details.append(rich_errors.retry_info(retry_s))
    return ServiceError(code, message, details)


def unavailable(
    message: str,
    reason: str = "SERVICE_UNAVAILABLE",
    retry_s: float = UNAVAILABLE_RETRY_S,
    metadata: Mapping[str, str] | None = None,
) -> ServiceError:
    return _retryable(grpc.StatusCode.UNAVAILABLE, message, reason, retry_s, metadata)


def outage(what: str, exc: BaseException, note: str = "", reason: str = "DEPENDENCY_UNAVAILABLE") -> ServiceError:
    """UNAVAILABLE for a dependency that failed: which one, its error in short, what to do."""
    detail = " ".join(str(exc).split())[:200]
    return unavailable(
        f"{what} is unavailable ({type(exc).__name__}: {detail});{note} retry shortly",
        reason,
        metadata={"dependency": what},
    )


def resource_exhausted(
    message: str,
    reason: str = "RESOURCE_EXHAUSTED",
    retry_s: float | None = EXHAUSTED_RETRY_S,
    metadata: Mapping[str, str] | None = None,
) -> ServiceError:
    return _retryable(grpc.StatusCode.RESOURCE_EXHAUSTED, message, reason, retry_s, metadata)
