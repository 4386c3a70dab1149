"""One server interceptor for every standalone service: the per-call scope around each handler.

For each unary-unary and unary-stream RPC it opens a `CallScope` (request id, deadline, metrics,
access log), guards the request deserializer so malformed bytes are INVALID_ARGUMENT rather than
grpc's UNKNOWN, and turns exceptions into statuses with `CallScope.status_of` (the same rule the
Ray Serve ingress uses).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

import grpc

from chatstack.core.call_scope import CallScope, check_well_formed, guarded_deserializer
from chatstack.core.metrics import RpcMetrics

UnaryBehavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
StreamBehavior = Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]


def method_label(full_method: str) -> str:
    """`/chatstack.v1.TokenizerService/Encode` -> `TokenizerService/Encode`."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return f"{service.rsplit('.', 1)[-1]}/{method}"


def _unavailable_handler(handler: grpc.RpcMethodHandler, service: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape that answers UNAVAILABLE (the backend is not up)."""
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"{service} is not ready; retry shortly")

    factory = (grpc.unary_stream_rpc_method_handler if handler.unary_stream is not None
               else grpc.unary_unary_rpc_method_handler)
    return factory(refuse, request_deserializer=guarded_deserializer(handler.request_deserializer),
                   response_serializer=handler.response_serializer)


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every unary-unary and unary-stream handler (see module docstring)."""

    def __init__(self, metrics: RpcMetrics, gated_services: frozenset[str] = frozenset(),
                 is_ready: Callable[[], bool] = lambda: True,
                 default_deadline_seconds: float | None = None) -> None:
        self._metrics = metrics
        self._gated = gated_services
        self._is_ready = is_ready
        self._default_deadline = default_deadline_seconds

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = method_label(handler_call_details.method)
        service = handler_call_details.method.lstrip("/").rpartition("/")[0]
        if service in self._gated and not self._is_ready():
            # The backend (model, Redis) is not ready or died: every service answers the same
            # way. Health and reflection are not gated, so probes see NOT_SERVING meanwhile.
            return _unavailable_handler(handler, service)
        deserializer = guarded_deserializer(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method), request_deserializer=deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            wrap = self._wrap_stream if _is_async_gen(handler.unary_stream) else self._wrap_unary
            return grpc.unary_stream_rpc_method_handler(
                wrap(handler.unary_stream, method), request_deserializer=deserializer,
                response_serializer=handler.response_serializer)
        return handler

    def _scope(self, method: str, context: grpc.aio.ServicerContext) -> CallScope:
        return CallScope(self._metrics, method, context.invocation_metadata(),
                         context.time_remaining(), self._default_deadline)

    def _wrap_unary(self, behavior: Callable[..., Any], method: str) -> UnaryBehavior:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            scope = self._scope(method, context)
            try:
                check_well_formed(request)
                return await behavior(request, context)
            except BaseException as exc:
                await _answer_failure(scope, context, exc)
            finally:
                scope.finish()

        return wrapped

    def _wrap_stream(self, behavior: Callable[..., Any], method: str) -> StreamBehavior:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            scope = self._scope(method, context)
            try:
                check_well_formed(request)
                async with aclosing(behavior(request, context)) as source:
                    async for message in source:
                        yield message
            except BaseException as exc:
                await _answer_failure(scope, context, exc)
            finally:
                scope.finish()

        return wrapped


async def _answer_failure(scope: CallScope, context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    """End the call with the status `scope` maps `exc` to (re-raises an abort already sent and
    a cancellation, which have their status)."""
    if isinstance(exc, grpc.aio.AbortError):
        scope.code = context.code() or grpc.StatusCode.UNKNOWN
        raise exc
    code, details = scope.status_of(exc)
    if code == grpc.StatusCode.CANCELLED:
        raise exc
    await context.abort(code, details)


def _is_async_gen(behavior: Callable[..., Any]) -> bool:
    """True for a streaming handler written as an async generator (not one that streams with
    `await context.write(...)`, like health Watch)."""
    return inspect.isasyncgenfunction(behavior)
