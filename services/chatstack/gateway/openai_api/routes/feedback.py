"""`POST /v1/responses/{id}/feedback` (chatstack extension): a rating or preferred candidate."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from chatstack.gateway.openai_api.door import HttpDoor
from chatstack.gateway.openai_api.responses_api import ResponsesHandler
from chatstack.gateway.openai_api.schemas import FeedbackRequest


def router(door: HttpDoor) -> APIRouter:
    """The feedback route."""
    routes, stored = APIRouter(), ResponsesHandler(door.flows)

    @routes.post("/v1/responses/{response_id}/feedback")
    async def response_feedback(response_id: str, body: FeedbackRequest, request: Request) -> dict[str, Any]:
        return await stored.feedback(door.owner(request), response_id, body)

    return routes
