"""ServeIngress: a Ray Serve deployment that serves a chatstack servicer through Serve's gRPC
proxy — the same servicer object the standalone runtime registers, no second copy of logic.

For every RPC of the proto service it adds a method of the same name (Serve routes gRPC calls by
method name) that runs the servicer inside the same `CallScope` the standalone interceptor uses:
request id, deadline (Serve's context carries none from the client: the service's default
deadline applies), metrics, access log and status mapping, set on Serve's gRPC context, which the
proxy returns.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from chatstack.core.call_scope import CallScope
from chatstack.core.metrics import RpcMetrics

log = logging.getLogger(__name__)


class ServeContext:
    """The subset of grpc.aio.ServicerContext the servicers use, over Serve's gRPC context."""

    def __init__(self, grpc_context: Any) -> None:
        self._ctx = grpc_context

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return list(self._ctx.invocation_metadata()) if self._ctx is not None else []

    def time_remaining(self) -> float | None:
        return None  # Serve's proxy does not pass the client's deadline on


class ServeIngress:
    """Base of every chatstack Serve deployment (subclasses set `servicer` in `__init__`)."""

    servicer: Any = None
    rpc_metrics: RpcMetrics
    default_deadline_seconds: float | None = None
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

    def _scope(self, method: str, context: ServeContext) -> CallScope:
        return CallScope(self.rpc_metrics, method, context.invocation_metadata(),
                         context.time_remaining(), self.default_deadline_seconds)


def _fail(scope: CallScope, exc: BaseException, grpc_context: Any) -> None:
    code, details = scope.status_of(exc)
    if grpc_context is not None and code != grpc.StatusCode.CANCELLED:
        grpc_context.set_code(code)
        grpc_context.set_details(details)


def _unary_method(name: str, label: str) -> Callable[..., Any]:
    async def method(self: ServeIngress, request: Any, grpc_context: Any = None) -> Any:
        ctx = ServeContext(grpc_context)
        scope = self._scope(label, ctx)
        try:
            return await getattr(self.servicer, name)(request, ctx)
        except BaseException as exc:
            _fail(scope, exc, grpc_context)
            raise
        finally:
            scope.finish()

    method.__name__ = name
    return method


def _stream_method(name: str, label: str) -> Callable[..., Any]:
    async def method(self: ServeIngress, request: Any, grpc_context: Any = None) -> AsyncIterator[Any]:
        ctx = ServeContext(grpc_context)
        scope = self._scope(label, ctx)
        try:
            async with aclosing(getattr(self.servicer, name)(request, ctx)) as source:
                async for message in source:
                    yield message
        except BaseException as exc:
            _fail(scope, exc, grpc_context)
            raise
        finally:
            scope.finish()

    method.__name__ = name
    return method


def ingress_class(name: str, service: ServiceDescriptor, base: type) -> type:
    """`base` (a ServeIngress subclass with `__init__`) plus one method per RPC of `service`."""
    methods: dict[str, Any] = {}
    for rpc in service.methods:
        label = f"{service.name}/{rpc.name}"
        methods[rpc.name] = (_stream_method if rpc.server_streaming else _unary_method)(rpc.name, label)
    return type(name, (base,), methods)
