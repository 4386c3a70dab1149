"""`GET /v1/models`: the one served model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from chatstack.gateway.openai_api.door import HttpDoor


def router(door: HttpDoor) -> APIRouter:
    """The models route."""
    routes = APIRouter()

    @routes.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        door.owner(request)
        name = await door.model_name()
        return {"object": "list",
                "data": [{"id": name, "object": "model", "created": 0, "owned_by": "chatstack"}]}

    return routes
