"""One RPC's scope, the same in both runtimes (the standalone interceptor and the Ray Serve
ingress): request id, deadline, in-flight and latency metrics, status mapping and access log.

`status_of` is the boundary's single rule for what a client sees: a domain error keeps its
status and message; a cancellation is CANCELLED; anything else is a bug, logged with its
traceback and the request id and answered INTERNAL with only the request id (no internals).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from chatstack.core.errors import ChatstackError, InvalidRequest, status_for
from chatstack.core.metrics import RpcMetrics
from chatstack.core.request_context import (
    REQUEST_ID_KEY,
    metadata_value,
    new_request_id,
    set_deadline,
    set_request_id,
)

log = logging.getLogger("chatstack.access")


class MalformedRequest:
    """What a guarded deserializer returns for bytes that are not a valid message."""


def guarded_deserializer(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserialize` that returns a MalformedRequest instead of raising (grpc would answer a
    raising deserializer with UNKNOWN and Python's exception text)."""
    if deserialize is None:
        return None

    def guarded(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except (DecodeError, ValueError, UnicodeDecodeError):
            return MalformedRequest()

    return guarded


def check_well_formed(request: Any) -> None:
    """INVALID_ARGUMENT if the request bytes did not parse."""
    if isinstance(request, MalformedRequest):
        raise InvalidRequest("request: not a valid protobuf message of this RPC's request type "
                             "(truncated bytes, invalid UTF-8 in a string field, or a wrong type)")


class CallScope:
    """Opened when an RPC starts, closed with its final status (see module docstring)."""

    def __init__(self, metrics: RpcMetrics, method: str,
                 metadata: Iterable[tuple[str, str | bytes]] | None,
                 time_remaining: float | None, default_deadline_seconds: float | None) -> None:
        self.metrics = metrics
        self.method = method
        self.code = grpc.StatusCode.OK
        self.details = ""
        self.start = time.perf_counter()
        self.request_id = metadata_value(metadata, REQUEST_ID_KEY) or new_request_id()
        # Each RPC runs in its own task (its own context copy): nothing to reset afterwards, and
        # a reset from another context (a stream closed by the framework) would raise.
        set_request_id(self.request_id)
        set_deadline(time_remaining if time_remaining is not None else default_deadline_seconds)
        metrics.in_flight.labels(metrics.service, method).inc()

    def status_of(self, exc: BaseException) -> tuple[grpc.StatusCode, str]:
        """The status and message the client gets for `exc` (recorded for `finish`)."""
        if isinstance(exc, ChatstackError):
            self.code, self.details = status_for(exc), str(exc)
        elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
            self.code, self.details = grpc.StatusCode.CANCELLED, "cancelled"
        else:
            log.error("unexpected error in %s (request id %s)", self.method, self.request_id,
                      exc_info=exc)
            self.code = grpc.StatusCode.INTERNAL
            self.details = f"internal error (request id {self.request_id})"
        return self.code, self.details

    def finish(self) -> None:
        """Record metrics and the access log line (failures at INFO, successes at DEBUG)."""
        seconds = time.perf_counter() - self.start
        self.metrics.in_flight.labels(self.metrics.service, self.method).dec()
        self.metrics.observe(self.method, self.code.name, seconds)
        level = logging.DEBUG if self.code == grpc.StatusCode.OK else logging.INFO
        if log.isEnabledFor(level):
            details = "" if self.code == grpc.StatusCode.OK else f" {self.details!r}"
            log.log(level, "%s %s %.1fms%s", self.method, self.code.name, seconds * 1e3, details)
