"""`POST /v1/chat/completions`: stateless completions, whole or streamed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from chatstack.gateway.openai_api.chat_completions import ChatCompletionsHandler
from chatstack.gateway.openai_api.door import HttpDoor, event_stream
from chatstack.gateway.openai_api.schemas import ChatCompletionRequest, check_supported


def router(door: HttpDoor) -> APIRouter:
    """The chat-completions route."""
    routes, handler = APIRouter(), ChatCompletionsHandler(door.flows)

    @routes.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        door.owner(request)
        check_supported(body)
        name = await door.served(body.model)
        if not body.stream:
            return await handler.complete(body, name)
        return await event_stream(handler.stream(body, name))

    return routes
