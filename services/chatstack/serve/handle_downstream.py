"""The gateway's backends on Ray Serve, called through deployment handles instead of gRPC.

On the standalone runtime the gateway's typed clients (`chatstack.gateway.clients`) call the
backends over gRPC (`Downstream`). A gateway replica on Serve reaches the other applications
through their deployment handles instead: a call goes from this replica straight to a backend
replica that Serve's router picks (power of two choices over the replicas' queues), with no
second trip through Serve's gRPC proxy and its serialization. `HandleDownstream` offers the
surface the typed clients use (`call` by service and method name, `generate_stream`), so the chat
dataplane does not know which transport it runs on. A call's `route_key` (the session id, on
generation calls) travels as Serve's session id (`handle.options(session_id=...)`), which the
generation deployment's router (`chatstack.serve.session_router`) hashes to the replica holding
the conversation's prefix in its KV cache; a deployment on Serve's default router ignores it.

What the gRPC transport carries in metadata (request id, the session owner) travels in a
`HandleCallContext` in the place of Serve's gRPC context; each backend method runs in the same
`CallScope` as over the proxy. A backend's domain error comes back as the exception it raised
(Ray wraps it) and is mapped exactly like the status a gRPC call would have returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any

from chatstack.core import errors
from chatstack.core.request_context import OWNER_KEY, downstream_metadata
from chatstack.gateway.backend_status import call_deadline, map_status
from chatstack.gateway.config import GatewayConfig
from chatstack.v1 import generation_pb2

SERVICES = ("tokenizer", "generation", "reward", "session")  # Serve application names


class HandleCallContext:
    """Stands in for Serve's gRPC context on a handle call: the metadata a gRPC call would carry
    (picklable; the status setters are no-ops: the exception itself travels back)."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        """The call's metadata."""
        return self.metadata

    def set_code(self, code: Any) -> None:
        """Ignored: the raised exception reaches the caller."""

    def set_details(self, details: str) -> None:
        """Ignored: the raised exception reaches the caller."""


def map_backend_error(service: str, exc: BaseException) -> errors.ChatstackError:
    """What a handle call raised, as the domain error the gRPC transport would give."""
    cause = getattr(exc, "cause", None) or exc  # Ray wraps a replica's exception (RayTaskError)
    if isinstance(cause, errors.ChatstackError):
        return map_status(service, errors.status_for(cause), str(cause))
    return errors.BackendUnavailable(f"{service} service unavailable: {type(cause).__name__}")


class HandleDownstream:
    """The backends' deployment handles, with deadlines, request ids and error mapping."""

    def __init__(self, config: GatewayConfig, get_handle: Callable[[str], Any] | None = None) -> None:
        if get_handle is None:
            from ray import serve

            get_handle = serve.get_app_handle
        self.config = config
        self._handles = {name: get_handle(name) for name in SERVICES}

    def _handle(self, service: str, method: str, route_key: str | None, stream: bool = False) -> Any:
        """The handle of one call: method, streaming and session id set in one `options` (what
        `getattr(handle, method)` costs anyway)."""
        options: dict[str, Any] = {"method_name": method}
        if stream:
            options["stream"] = True
        if route_key:
            options["session_id"] = route_key
        return self._handles[service].options(**options)

    async def close(self) -> None:
        """Nothing to close: Serve owns the handles' connections."""

    def timeout(self) -> float:
        """The deadline of a call made now (as over gRPC: `call_deadline`)."""
        return call_deadline(self.config.default_deadline_seconds)

    async def call(self, service: str, method: str, request: Any, owner: str | None = None,
                   timeout: float | None = None,  # noqa: ASYNC109
                   route_key: str | None = None) -> Any:
        """One call with deadline, metadata and error mapping (as `Downstream.call`); the
        deployment's router picks the replica, by `route_key` where it routes by session."""
        context = HandleCallContext(downstream_metadata({OWNER_KEY: owner} if owner else {}))
        response: Any = self._handle(service, method, route_key).remote(request, context)
        try:
            return await asyncio.wait_for(response, timeout or self.timeout())
        except TimeoutError as exc:
            response.cancel()
            raise errors.DeadlineExceeded(f"{service} service: deadline exceeded") from exc
        except asyncio.CancelledError:
            response.cancel()
            raise
        except Exception as exc:
            raise map_backend_error(service, exc) from exc

    async def generate_stream(self, request: generation_pb2.GenerateStreamRequest,
                              route_key: str | None = None
                              ) -> AsyncGenerator[generation_pb2.GenerateStreamResponse]:
        """GenerateStream through the handle; closing the iterator (or cancelling the task)
        cancels the replica's generator, which aborts the request in the engine."""
        stream: Any = self._handle("generation", "GenerateStream", route_key, stream=True).remote(
            request, HandleCallContext(downstream_metadata()))
        try:
            async with asyncio.timeout(self.timeout()):
                async for message in stream:
                    yield message
        except TimeoutError as exc:
            raise errors.DeadlineExceeded("generation service: deadline exceeded") from exc
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:
            raise map_backend_error("generation", exc) from exc
        finally:
            stream.cancel()  # no-op when finished; aborts generation when we stop early
