"""Errors that map onto gRPC status codes.

Business code raises `ServiceError` (or one of the helpers below) with a message that says what to
fix; the server interceptor turns it into the gRPC status. Code never needs the grpc context to
report bad input, and the same functions work from CLIs.
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid_argument(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, message)


def already_exists(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.ALREADY_EXISTS, message)


def not_found(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.FAILED_PRECONDITION, message)


def unavailable(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.UNAVAILABLE, message)


def outage(what: str, exc: BaseException, note: str = "") -> ServiceError:
    """UNAVAILABLE for a dependency that failed: which one, its error in short, what to do."""
    detail = " ".join(str(exc).split())[:200]
    return unavailable(f"{what} is unavailable ({type(exc).__name__}: {detail});{note} retry shortly")


def resource_exhausted(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)
