"""ServeIngress: a Ray Serve deployment that serves a chatstack servicer through Serve's gRPC
proxy — the same servicer object the standalone runtime registers, no second copy of logic.

For every RPC of the proto service it adds a method of the same name (Serve routes gRPC calls by
method name): it binds the request id, records the per-RPC metrics, calls the servicer, and maps
domain errors to status codes (set on Serve's gRPC context, which the proxy returns).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from chatstack.core.errors import ChatstackError, status_for
from chatstack.core.metrics import RpcMetrics
from chatstack.core.request_context import (
    REQUEST_ID_KEY,
    metadata_value,
    new_request_id,
    reset_request_id,
    set_request_id,
)

log = logging.getLogger(__name__)


class ServeContext:
    """The subset of grpc.aio.ServicerContext the servicers use, over Serve's gRPC context."""

    def __init__(self, grpc_context: Any) -> None:
        self._ctx = grpc_context

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return list(self._ctx.invocation_metadata()) if self._ctx is not None else []

    def time_remaining(self) -> float | None:
        return None  # Serve's proxy enforces request_timeout_s itself


class ServeIngress:
    """Base of every chatstack Serve deployment (subclasses set `servicer` in `__init__`)."""

    servicer: Any = None
    rpc_metrics: RpcMetrics
    fatal_reason: str | None = None

    async def check_health(self) -> None:
        """Serve's health check: fails until the backend is ready, and after it died."""
        if self.servicer is None:
            raise RuntimeError("backend not ready")
        if self.fatal_reason:
            raise RuntimeError(self.fatal_reason)

    def mark_fatal(self, reason: str) -> None:
        """The backend died: fail health checks so Serve replaces this replica."""
        log.error("backend failed: %s", reason)
        self.fatal_reason = reason

    def _begin(self, method: str, grpc_context: Any) -> tuple[Any, float, ServeContext]:
        ctx = ServeContext(grpc_context)
        rid = metadata_value(ctx.invocation_metadata(), REQUEST_ID_KEY) or new_request_id()
        self.rpc_metrics.in_flight.labels(self.rpc_metrics.service, method).inc()
        return set_request_id(rid), time.perf_counter(), ctx

    def _end(self, method: str, token: Any, started: float, code: grpc.StatusCode) -> None:
        self.rpc_metrics.in_flight.labels(self.rpc_metrics.service, method).dec()
        self.rpc_metrics.observe(method, code.name, time.perf_counter() - started)
        reset_request_id(token)

    def _fail(self, exc: BaseException, grpc_context: Any) -> grpc.StatusCode:
        if isinstance(exc, ChatstackError):
            code = status_for(exc)
            details = str(exc)
        elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
            return grpc.StatusCode.CANCELLED
        else:
            log.exception("unexpected error", exc_info=exc)
            code, details = grpc.StatusCode.INTERNAL, "internal error"
        if grpc_context is not None:
            grpc_context.set_code(code)
            grpc_context.set_details(details)
        return code


def _unary_method(name: str, label: str) -> Callable[..., Any]:
    async def method(self: ServeIngress, request: Any, grpc_context: Any = None) -> Any:
        token, started, ctx = self._begin(label, grpc_context)
        code = grpc.StatusCode.OK
        try:
            return await getattr(self.servicer, name)(request, ctx)
        except BaseException as exc:
            code = self._fail(exc, grpc_context)
            raise
        finally:
            self._end(label, token, started, code)

    method.__name__ = name
    return method


def _stream_method(name: str, label: str) -> Callable[..., Any]:
    async def method(self: ServeIngress, request: Any, grpc_context: Any = None) -> AsyncIterator[Any]:
        token, started, ctx = self._begin(label, grpc_context)
        code = grpc.StatusCode.OK
        try:
            async for message in getattr(self.servicer, name)(request, ctx):
                yield message
        except BaseException as exc:
            code = self._fail(exc, grpc_context)
            raise
        finally:
            self._end(label, token, started, code)

    method.__name__ = name
    return method


def ingress_class(name: str, service: ServiceDescriptor, base: type) -> type:
    """`base` (a ServeIngress subclass with `__init__`) plus one method per RPC of `service`."""
    methods: dict[str, Any] = {}
    for rpc in service.methods:
        label = f"{service.name}/{rpc.name}"
        methods[rpc.name] = (_stream_method if rpc.server_streaming else _unary_method)(rpc.name, label)
    return type(name, (base,), methods)
