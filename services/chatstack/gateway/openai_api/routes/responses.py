"""`/v1/responses`: create (whole or streamed), read and delete stored responses."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from chatstack.gateway.openai_api.door import HttpDoor, event_stream
from chatstack.gateway.openai_api.responses_api import ResponsesHandler
from chatstack.gateway.openai_api.schemas import ResponseCreateRequest, check_supported


def router(door: HttpDoor) -> APIRouter:
    """The Responses routes."""
    routes, stored = APIRouter(), ResponsesHandler(door.flows)

    @routes.post("/v1/responses", response_model=None)
    async def create_response(body: ResponseCreateRequest, request: Request) -> Any:
        who = door.owner(request)
        check_supported(body)
        name = await door.served(body.model)
        if not body.stream:
            return await stored.create(who, body, name)
        return await event_stream(stored.stream(who, body, name))

    @routes.get("/v1/responses/{response_id}")
    async def get_response(response_id: str, request: Request) -> dict[str, Any]:
        return await stored.get(door.owner(request), response_id, await door.model_name())

    @routes.delete("/v1/responses/{response_id}")
    async def delete_response(response_id: str, request: Request) -> dict[str, Any]:
        return await stored.delete(door.owner(request), response_id)

    return routes
