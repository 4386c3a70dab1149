"""What every OpenAI route shares: the gateway's flows, the caller's owner (the API key, as on
gRPC) and the served model; and answering with server-sent events."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import cast

import anyio
from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.types import Send

from chatstack.core.errors import NotFound
from chatstack.gateway.auth import ApiKeyAuthenticator
from chatstack.gateway.flows import GatewayFlows


@dataclass(frozen=True)
class HttpDoor:
    """The flows behind the HTTP API and who may call them."""

    flows: GatewayFlows
    auth: ApiKeyAuthenticator

    def owner(self, request: Request) -> str:
        """The caller's owner, from `Authorization: Bearer <key>` (401 without a valid key)."""
        return self.auth.owner_for(request.headers.get("authorization"))

    async def model_name(self) -> str:
        """The served model's name."""
        return await self.flows.model_name()

    async def served(self, requested: str) -> str:
        """The served model's name, if `requested` is it (404 naming the served one otherwise)."""
        name = await self.model_name()
        if requested != name:
            raise NotFound(f"model: {requested!r} is not served here (GET /v1/models lists {name!r})")
        return name


class _EventStreamResponse(StreamingResponse):
    """Server-sent events whose generator is closed as soon as the response ends, however it
    ends. A client that goes away cancels the send in progress; the generator, suspended at a
    `yield`, would otherwise be closed only when garbage-collected, and with it the abort of the
    generation and the rollback of the exchange. The close is shielded from that cancellation."""

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            with anyio.CancelScope(shield=True):
                await cast(AsyncGenerator[str], self.body_iterator).aclose()


async def event_stream(events: AsyncGenerator[str]) -> StreamingResponse:
    """Server-sent events; the first is made before the response starts, so an error before it
    is answered with its own HTTP status (the exception handlers), not inside a 200 stream."""
    first = await anext(events)

    async def all_events() -> AsyncGenerator[str]:
        try:
            yield first
            async for event in events:
                yield event
        finally:
            await events.aclose()
    return _EventStreamResponse(all_events(), media_type="text/event-stream",
                                headers={"cache-control": "no-cache"})
