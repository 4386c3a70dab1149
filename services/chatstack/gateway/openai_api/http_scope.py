"""One HTTP request's scope: the gRPC door's `CallScope` discipline for the HTTP door.

A pure ASGI middleware around the whole app (so nothing the app does, its 500s included, escapes
it), in both runtimes (uvicorn standalone, Serve's HTTP proxy):

- request id: `x-request-id` taken or made, bound to the request's context (every log line
  carries it) and returned on every response, errors included;
- deadline: the client's timeout (`x-chatstack-timeout` or the OpenAI SDKs' `x-stainless-timeout`,
  seconds) or `default_deadline_seconds`, bound like a gRPC deadline, so every backend call of the
  request gets what is left; a handler still running a moment past it is cancelled (504 if
  nothing was sent yet);
- body limit: `max_request_bytes`, checked against Content-Length before reading and while
  reading a chunked body: 413 at once, never more than the limit held in memory;
- client disconnect: cancels the handler, non-streamed calls too (the generation is aborted in
  the engine and a half-made exchange rolled back), as vLLM's `with_cancellation` does per route;
- an unexpected exception: logged with its traceback and the request id, answered 500 in
  OpenAI's shape with only the request id;
- an in-flight gauge, a count and latency per route and status, and an access log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from chatstack.core.metrics import MetricFactory
from chatstack.core.request_context import (
    REQUEST_ID_KEY,
    new_request_id,
    set_deadline,
    set_request_id,
    set_transport,
)
from chatstack.gateway.openai_api.errors import error_body

log = logging.getLogger("chatstack.access")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
TIMEOUT_HEADERS = (b"x-chatstack-timeout", b"x-stainless-timeout")
_REQUEST_ID = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,127}")
OVERRUN_GRACE_SECONDS = 1.0  # past the deadline, before a handler is cancelled from outside


class HttpMetrics:
    """Count, latency and in-flight requests of each HTTP route, by status."""

    def __init__(self, factory: MetricFactory) -> None:
        self.requests = factory.counter(
            "chatstack_http_requests", "HTTP requests of the OpenAI-compatible API, by route and status.",
            ["route", "status"])
        self.duration = factory.histogram(
            "chatstack_http_request_duration_seconds",
            "Seconds from a request's arrival to its response's end (a stream's last event).", ["route"])
        self.in_flight = factory.gauge(
            "chatstack_http_in_flight_requests", "HTTP requests being handled right now.", [])


def client_timeout(headers: list[tuple[bytes, bytes]], default: float, most: float) -> float:
    """The deadline (seconds) a request asks for in its headers, within (0, most]; else `default`."""
    for name, value in headers:
        if name.lower() in TIMEOUT_HEADERS:
            try:
                seconds = float(value)
            except ValueError:
                continue
            if math.isfinite(seconds) and seconds > 0:
                return min(seconds, most)
    return default


class HttpCallScope:
    """The middleware (see module docstring)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics, max_request_bytes: int,
                 default_deadline_seconds: float, max_deadline_seconds: float) -> None:
        self.app = app
        self.metrics = metrics
        self.max_request_bytes = max_request_bytes
        self.default_deadline = default_deadline_seconds
        self.max_deadline = max_deadline_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        given = next((v.decode("latin-1") for k, v in headers if k.lower() == REQUEST_ID_KEY.encode()), "")
        # Taken only if it can travel on (gRPC metadata: printable ASCII) and is of a sane length.
        request_id = given if _REQUEST_ID.fullmatch(given) else new_request_id()
        set_request_id(request_id)
        set_transport("http")
        deadline = client_timeout(headers, self.default_deadline, self.max_deadline)
        set_deadline(deadline)
        call = _Call(request_id, send)
        self.metrics.in_flight.inc()
        try:
            body = await self._read_body(headers, receive, call)
            if body is not None:
                await self._run(scope, body, receive, call, deadline)
        finally:
            self.metrics.in_flight.dec()
            route = getattr(scope.get("route"), "path", "unmatched")
            seconds = time.perf_counter() - started
            self.metrics.requests.labels(route, str(call.status)).inc()
            self.metrics.duration.labels(route).observe(seconds)
            level = logging.DEBUG if call.status < 400 else logging.INFO
            if log.isEnabledFor(level):
                log.log(level, "%s %s %d %.1fms", scope.get("method"), scope.get("path"), call.status,
                        seconds * 1e3)

    async def _read_body(self, headers: list[tuple[bytes, bytes]], receive: Receive,
                         call: _Call) -> bytes | None:
        """The whole body, or None after answering 413 (too large) or seeing the client leave."""
        limit = self.max_request_bytes
        declared = next((v for k, v in headers if k.lower() == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await call.error(413, f"body: {int(declared)} bytes exceed the limit of {limit}",
                             "request_too_large")
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                call.status = 499
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await call.error(413, f"body: more than the limit of {limit} bytes", "request_too_large")
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _run(self, scope: Scope, body: bytes, receive: Receive, call: _Call, deadline: float) -> None:
        """Run the app with the body read, cancelled if the client leaves or the deadline is
        overrun; an exception it raises is answered 500 (if nothing was sent yet)."""
        gone = asyncio.Event()
        delivered = False

        async def app_receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        handler = asyncio.ensure_future(self.app(scope, app_receive, call.send))

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if not call.finished:  # (a server reports a disconnect once the response is complete, too)
                gone.set()
                handler.cancel()

        watcher = asyncio.ensure_future(watch_disconnect())
        try:
            done, _ = await asyncio.wait({handler}, timeout=deadline + OVERRUN_GRACE_SECONDS)
            if not done:
                handler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await handler
                log.warning("request %s overran its deadline of %.1fs: cancelled", call.request_id, deadline)
                await call.error(504, f"deadline: the request did not complete within {deadline:g}s",
                                 "deadline_exceeded")
                return
            handler.result()
        except asyncio.CancelledError:
            if not gone.is_set():
                raise  # the server itself is stopping
            call.status = 499 if not call.started else call.status  # the client left
        except Exception:
            log.exception("unexpected error in %s %s (request id %s)", scope.get("method"), scope.get("path"),
                          call.request_id)
            await call.error(500, f"internal error (request id {call.request_id})", "internal_error")
        finally:
            for task in (handler, watcher):
                if not task.done():
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


class _Call:
    """The response side of one request: its status, the request id header, errors in OpenAI's shape."""

    def __init__(self, request_id: str, send: Send) -> None:
        self.request_id = request_id
        self._send = send
        self.status = 0
        self.started = False
        self.finished = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.finished = True
        if message["type"] == "http.response.start":
            self.started = True
            self.status = int(message["status"])
            message["headers"] = [*message.get("headers", []),
                                  (REQUEST_ID_KEY.encode(), self.request_id.encode("latin-1", "replace"))]
        await self._send(message)

    async def error(self, status: int, message: str, code: str) -> None:
        """Answer `status` with an OpenAI error body, unless a response has started."""
        if self.started:
            self.status = self.status or status
            return
        payload = json.dumps(error_body(status, message, code=code)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if status == 413:
            headers.append((b"connection", b"close"))  # the rest of the body is not read
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": payload})
