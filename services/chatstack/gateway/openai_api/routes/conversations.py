"""`/v1/conversations`: create, read, delete a conversation, and list its items."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request

from chatstack.gateway.openai_api.door import HttpDoor
from chatstack.gateway.openai_api.responses_api import ResponsesHandler
from chatstack.gateway.openai_api.schemas import ConversationCreateRequest, check_supported


def router(door: HttpDoor) -> APIRouter:
    """The Conversations routes."""
    routes, stored = APIRouter(), ResponsesHandler(door.flows)

    @routes.post("/v1/conversations")
    async def create_conversation(body: ConversationCreateRequest, request: Request) -> dict[str, Any]:
        who = door.owner(request)
        check_supported(body)
        return await stored.create_conversation(who, body)

    @routes.get("/v1/conversations/{conversation_id}")
    async def get_conversation(conversation_id: str, request: Request) -> dict[str, Any]:
        return await stored.get_conversation(door.owner(request), conversation_id)

    @routes.delete("/v1/conversations/{conversation_id}")
    async def delete_conversation(conversation_id: str, request: Request) -> dict[str, Any]:
        return await stored.delete_conversation(door.owner(request), conversation_id)

    @routes.get("/v1/conversations/{conversation_id}/items")
    async def list_items(conversation_id: str, request: Request, limit: int = Query(20, ge=1, le=100),
                         order: Literal["asc", "desc"] = "desc", after: str | None = None) -> dict[str, Any]:
        return await stored.items(door.owner(request), conversation_id, limit, order, after)

    return routes
