"""A Locust HttpUser base for streamed HTTP APIs: server-sent event streams and JSON calls, each in
Locust's stats with a name of its own.

Locust's HttpSession times a `stream=True` request until its headers arrived. A stream here is
timed to its last event instead (the entry `<name>`), and its time to the first generated text is
an entry of its own (`<name> TTFT`), as GrpcUser does for gRPC streams. A request fails on a
non-2xx status (with the server's OpenAI-shaped error message), a connection or read error, an
`error` event or a stream that ends early (loadtest.sse); a call Locust cuts short when it stops
the user is `<name> (unfinished)`, not a failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import requests
from gevent import GreenletExit
from locust import HttpUser
from locust.clients import ResponseContextManager

from loadtest.grpc_user import UNFINISHED
from loadtest.sse import SseParser, StreamError, StreamReader, error_message


class HttpFailure(Exception):
    """A failed HTTP request as Locust shows it: `HTTP 401: authentication_error: ...`."""

    @classmethod
    def from_response(cls, response: requests.Response) -> HttpFailure:
        """From a non-2xx response (its OpenAI error body if it has one), or a connection error."""
        error = getattr(response, "error", None)
        if not response.status_code and error is not None:
            return cls(f"{type(error).__name__}: {error}")
        try:
            body = response.json()
            detail = error_message(body.get("error", body)) if isinstance(body, dict) else str(body)
        except ValueError:
            detail = response.text[:200]
        return cls(f"HTTP {response.status_code}: {detail}")


class SseUser(HttpUser):
    """Base of the HTTP users: `stream()` for server-sent events, `call()` for JSON requests.

    Subclasses set `self.host` (the base URL, paths are appended to it), `headers` and `timeout`.
    """

    abstract = True
    headers: dict[str, str] = {}
    timeout = 60.0  # seconds: each read's timeout, and a stream's deadline as a whole

    def report(self, name: str, method: str, start: float, length: int = 0,
               exception: BaseException | None = None) -> None:
        """One entry in Locust's stats: `name`, milliseconds since `start` (a perf_counter)."""
        self.environment.events.request.fire(
            request_type=method, name=name, response_time=(time.perf_counter() - start) * 1000.0,
            response_length=length, exception=exception, context=self.context())

    def _send(self, method: str, path: str, name: str, start: float, **kwargs: Any) -> ResponseContextManager:
        """The request, reported by the caller's `with` block; `(unfinished)` if Locust cuts it short."""
        try:
            return self.client.request(method, path, name=name, catch_response=True, headers=self.headers,
                                       timeout=self.timeout, **kwargs)
        except GreenletExit:
            self.report(name + UNFINISHED, method, start)
            raise

    def call(self, method: str, path: str, name: str, body: dict[str, Any] | None = None,
             check: Callable[[Any], str] | None = None) -> Any:
        """A JSON request; its decoded answer, or None if it failed (`check` returns a problem, or '')."""
        start = time.perf_counter()
        with self._send(method, path, name, start, json=body) as response:
            try:
                if not 200 <= response.status_code < 300:
                    response.failure(HttpFailure.from_response(response))
                    return None
                answer = response.json()
                problem = check(answer) if check else ""
                if problem:
                    response.failure(problem)
                    return None
                response.success()
                return answer
            except ValueError:
                response.failure(f"HTTP {response.status_code}: not JSON: {response.text[:80]!r}")
                return None

    def stream(self, path: str, name: str, body: dict[str, Any], reader: StreamReader) -> bool:
        """POST `body`, read its server-sent events into `reader`; report `name TTFT` at the first
        generated text and `name` at the end (see module docstring). True if it succeeded."""
        start = time.perf_counter()
        length = 0
        with self._send("POST", path, name, start, json=body, stream=True) as response:
            meta = cast(dict[str, Any], response.request_meta)
            try:
                if response.status_code != 200:
                    response.failure(HttpFailure.from_response(response))
                    return False
                parser, ttft = SseParser(), False
                for chunk in response.iter_content(chunk_size=None):
                    length += len(chunk)
                    for event in parser.feed(chunk):
                        if reader.add(event) and not ttft:
                            ttft = True
                            self.report(f"{name} TTFT", "POST", start)
                    if time.perf_counter() - start > self.timeout:
                        raise StreamError(f"stream still running after {self.timeout:g} s (--rpc-timeout)")
                reader.finish()
            except StreamError as err:
                response.failure(err)
                return False
            except requests.RequestException as err:  # a read timeout, a connection closed mid-stream
                response.failure(HttpFailure(f"{type(err).__name__}: {err}"))
                return False
            except GreenletExit:
                meta["name"] = name + UNFINISHED
                response.success()
                raise
            finally:
                meta["response_time"] = (time.perf_counter() - start) * 1000.0
                meta["response_length"] = length
                if response.raw is not None:  # None: no connection was made
                    response.close()  # gives the connection back (or drops a half-read one)
            response.success()
            return True
