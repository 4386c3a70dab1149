"""What every transport of the backend clients shares: a call's deadline, and a backend's status
as a domain error naming the service (gRPC channels and Serve handles alike)."""

from __future__ import annotations

import grpc

from chatstack.core import errors
from chatstack.core.request_context import remaining_seconds

# Downstream status -> domain error class; the message keeps the service's own details.
_MAPPED: dict[grpc.StatusCode, type[errors.ChatstackError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidRequest,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.ABORTED: errors.VersionConflict,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.Overloaded,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
}
# Not mapped, so UNAVAILABLE (retryable): CANCELLED (the client's own cancel reaches the gateway
# as a cancelled task, never as a downstream status: a downstream CANCELLED means the backend
# went away, e.g. while shutting down), INTERNAL, UNKNOWN and the rest.
_PASS_THROUGH_DETAILS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                         grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS}


def call_deadline(default_seconds: float) -> float:
    """Seconds a downstream call made now may take: the calling RPC's remaining deadline (the
    client's, or the service's default deadline), `default_seconds` outside an RPC."""
    left = remaining_seconds()
    return default_seconds if left is None else max(0.001, left)


def map_status(service: str, code: grpc.StatusCode, details: str) -> errors.ChatstackError:
    """A downstream status as a domain error naming the service (any transport)."""
    if code in _PASS_THROUGH_DETAILS:
        return _MAPPED[code](details)
    cls = _MAPPED.get(code)
    if cls is not None:
        return cls(f"{service} service: {details}")
    return errors.BackendUnavailable(f"{service} service unavailable: {details}")
