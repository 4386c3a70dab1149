"""Domain exceptions and the one table that maps them to gRPC status codes.

Engines and stores raise these; they know nothing of gRPC. The runtime's interceptor turns
them into status codes with `status_for`. Any other exception is a bug: it is logged with the
request id and returned as INTERNAL.
"""

from __future__ import annotations

import grpc


class ChatstackError(Exception):
    """Base of every expected, client-visible failure. The message is sent to the client."""


class InvalidRequest(ChatstackError):
    """The request is malformed or violates a limit; the message names the field or item."""


class NotFound(ChatstackError):
    """The addressed resource does not exist (or belongs to another owner)."""


class AlreadyExists(ChatstackError):
    """The resource to create exists already."""


class FailedPrecondition(ChatstackError):
    """The resource is not in a state that allows the operation (e.g. pop on an empty stack)."""


class VersionConflict(ChatstackError):
    """An optimistic-concurrency check (expected_version) failed; nothing was changed."""


class LimitExceeded(ChatstackError):
    """A stored resource is full (e.g. max turns with the reject policy)."""


class Overloaded(ChatstackError):
    """The service is at its in-flight limit; retry later."""


class BackendUnavailable(ChatstackError):
    """A backend (Redis, an engine, a downstream service) cannot be reached."""


class DeadlineExceeded(ChatstackError):
    """The request's deadline passed before it completed."""


class Unauthenticated(ChatstackError):
    """No or an unknown credential."""


STATUS_BY_ERROR: dict[type[ChatstackError], grpc.StatusCode] = {
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    VersionConflict: grpc.StatusCode.ABORTED,
    LimitExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    BackendUnavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
}


def status_for(error: ChatstackError) -> grpc.StatusCode:
    """The status code of a domain error (most specific class in STATUS_BY_ERROR wins)."""
    for cls in type(error).__mro__:
        code = STATUS_BY_ERROR.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.UNKNOWN


# The HTTP status of each gRPC status, as google.rpc.Code documents the mapping (CANCELLED: the
# 499 "client closed request" of nginx and Google's APIs). An HTTP adapter maps a domain error
# through `status_for` and this table, so both transports answer from the one table above.
HTTP_BY_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


# A stable machine-readable code per domain error, for HTTP error bodies (`error.code`): clients
# branch on it, not on the message. A subclass may name a more specific one (`code` attribute).
CODE_BY_ERROR: dict[type[ChatstackError], str] = {
    InvalidRequest: "invalid_request",
    NotFound: "not_found",
    AlreadyExists: "already_exists",
    FailedPrecondition: "failed_precondition",
    VersionConflict: "conflict",
    LimitExceeded: "limit_exceeded",
    Overloaded: "overloaded",
    BackendUnavailable: "backend_unavailable",
    DeadlineExceeded: "deadline_exceeded",
    Unauthenticated: "invalid_api_key",
}


def code_for(error: ChatstackError) -> str:
    """The machine code of a domain error (most specific class wins)."""
    for cls in type(error).__mro__:
        code = CODE_BY_ERROR.get(cls)
        if code is not None:
            return code
    return "internal_error"


def http_status_for(error: ChatstackError) -> int:
    """The HTTP status of a domain error (500 only for an unmapped one: a bug)."""
    return HTTP_BY_STATUS.get(status_for(error), 500)
