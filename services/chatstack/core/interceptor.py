"""One server interceptor for every service: request ids, metrics and error mapping.

For each unary-unary and unary-stream RPC it binds the request id (from `x-request-id`
metadata, or a new one) to the task, counts the call in-flight, maps domain exceptions to status
codes through `errors.STATUS_BY_ERROR`, turns any other exception into INTERNAL (logged with the
request id), and records latency and the final status code.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from chatstack.core.errors import ChatstackError, status_for
from chatstack.core.metrics import RpcMetrics
from chatstack.core.request_context import (
    REQUEST_ID_KEY,
    metadata_value,
    new_request_id,
    reset_request_id,
    set_deadline,
    set_request_id,
)

log = logging.getLogger(__name__)

UnaryBehavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
StreamBehavior = Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]


def _method_name(full_method: str) -> str:
    """`/chatstack.v1.TokenizerService/Encode` -> `TokenizerService/Encode`."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return f"{service.rsplit('.', 1)[-1]}/{method}"


class _CallRecorder:
    """Tracks one call's request id, status code and timing."""

    def __init__(self, metrics: RpcMetrics, method: str, context: grpc.aio.ServicerContext):
        self.metrics = metrics
        self.method = method
        self.context = context
        self.code = grpc.StatusCode.OK
        self.start = time.perf_counter()
        rid = metadata_value(context.invocation_metadata(), REQUEST_ID_KEY) or new_request_id()
        self.token = set_request_id(rid)
        set_deadline(context.time_remaining())
        self.request_id = rid
        metrics.in_flight.labels(metrics.service, method).inc()

    async def fail(self, exc: BaseException) -> None:
        """Map `exc` to a status and abort the call (re-raises for non-aborts)."""
        if isinstance(exc, ChatstackError):
            self.code = status_for(exc)
            await self.context.abort(self.code, str(exc))
        if isinstance(exc, grpc.aio.AbortError):
            self.code = self.context.code() or grpc.StatusCode.UNKNOWN
            raise exc
        if isinstance(exc, asyncio.CancelledError):
            self.code = grpc.StatusCode.CANCELLED
            raise exc
        self.code = grpc.StatusCode.INTERNAL
        log.exception("unexpected error in %s", self.method, exc_info=exc)
        await self.context.abort(
            grpc.StatusCode.INTERNAL, f"internal error (request id {self.request_id})"
        )

    def finish(self) -> None:
        """Record metrics and unbind the request id."""
        seconds = time.perf_counter() - self.start
        self.metrics.in_flight.labels(self.metrics.service, self.method).dec()
        self.metrics.observe(self.method, self.code.name, seconds)
        # Access log: failures at INFO (with their details), successes at DEBUG.
        level = logging.DEBUG if self.code == grpc.StatusCode.OK else logging.INFO
        if log.isEnabledFor(level):
            details = "" if self.code == grpc.StatusCode.OK else f" {self.context.details()!r}"
            log.log(level, "%s %s %.1fms%s", self.method, self.code.name, seconds * 1e3, details)
        reset_request_id(self.token)


def _unavailable_handler(handler: grpc.RpcMethodHandler, service: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape that answers UNAVAILABLE (the backend is starting)."""
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"{service} is starting; retry shortly")

    factory = (grpc.unary_stream_rpc_method_handler if handler.unary_stream is not None
               else grpc.unary_unary_rpc_method_handler)
    return factory(refuse, request_deserializer=handler.request_deserializer,
                   response_serializer=handler.response_serializer)


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every unary-unary and unary-stream handler (see module docstring)."""

    def __init__(self, metrics: RpcMetrics, gated_services: frozenset[str] = frozenset(),
                 is_ready: Callable[[], bool] = lambda: True) -> None:
        self._metrics = metrics
        self._gated = gated_services
        self._is_ready = is_ready

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = _method_name(handler_call_details.method)
        service = handler_call_details.method.lstrip("/").rpartition("/")[0]
        if service in self._gated and not self._is_ready():
            # The backend (model, Redis) is not ready: every service answers the same way.
            # Health and reflection are not gated, so probes see NOT_SERVING meanwhile.
            return _unavailable_handler(handler, service)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _wrap_unary(self, behavior: UnaryBehavior, method: str) -> UnaryBehavior:
        metrics = self._metrics

        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call = _CallRecorder(metrics, method, context)
            try:
                return await behavior(request, context)
            except (Exception, asyncio.CancelledError) as exc:
                await call.fail(exc)
            finally:
                call.finish()

        return wrapped

    def _wrap_stream(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        metrics = self._metrics
        if not inspect.isasyncgenfunction(behavior):
            # A handler that streams with `await context.write(...)` (e.g. health Watch).
            return self._wrap_unary(behavior, method)

        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            call = _CallRecorder(metrics, method, context)
            try:
                async for message in behavior(request, context):
                    yield message
            except GeneratorExit:
                call.code = grpc.StatusCode.CANCELLED
                raise
            except (Exception, asyncio.CancelledError) as exc:
                await call.fail(exc)
            finally:
                call.finish()

        return wrapped
