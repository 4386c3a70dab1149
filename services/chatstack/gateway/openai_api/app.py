"""The OpenAI-compatible HTTP API of the gateway: a FastAPI app over the same transport-free
flows as the gRPC servicer, built from one router per API (`routes/`: models, chat completions,
responses, feedback, conversations; each can be mounted alone). Handlers only authenticate,
translate and map errors.

Every request: `Authorization: Bearer <key>` (the gRPC keys and owners), and the scope of
`http_scope.HttpCallScope` around it (request id, deadline, body limit, cancel on disconnect,
500s, metrics, access log). Every error, the framework's own included, is in OpenAI's shape with
a machine `code`; a request field that would change the answer and is not implemented is a 400
naming it (`schemas.check_supported`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as FrameworkError

from chatstack.core.errors import ChatstackError
from chatstack.gateway.auth import ApiKeyAuthenticator
from chatstack.gateway.flows import GatewayFlows
from chatstack.gateway.openai_api.door import HttpDoor
from chatstack.gateway.openai_api.errors import error_response, framework_response, validation_response
from chatstack.gateway.openai_api.http_scope import HttpCallScope, HttpMetrics
from chatstack.gateway.openai_api.routes import (
    chat_completions,
    conversations,
    feedback,
    models,
    moderations,
    responses,
)

log = logging.getLogger(__name__)

#: Every API's router, by module (`build_app(..., apis=...)` mounts a subset).
APIS = (models, chat_completions, responses, feedback, conversations, moderations)


@dataclass(frozen=True)
class HttpLimits:
    """The HTTP door's limits (the gateway's config)."""

    max_request_bytes: int = 16 << 20
    default_deadline_seconds: float = 120.0
    max_deadline_seconds: float = 600.0


def build_app(flows: GatewayFlows, auth: ApiKeyAuthenticator, metrics: HttpMetrics,
              limits: HttpLimits = HttpLimits(), apis: tuple = APIS) -> FastAPI:
    """The app (see module docstring), with the routers of `apis`."""
    app = FastAPI(title="chatstack", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(HttpCallScope, metrics=metrics, max_request_bytes=limits.max_request_bytes,
                       default_deadline_seconds=limits.default_deadline_seconds,
                       max_deadline_seconds=limits.max_deadline_seconds)
    app.add_exception_handler(ChatstackError, _domain_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _bad_body)  # type: ignore[arg-type]
    app.add_exception_handler(FrameworkError, _framework_error)  # type: ignore[arg-type]
    door = HttpDoor(flows, auth)
    for api in apis:
        app.include_router(api.router(door))
    app.include_router(_health())
    return app


async def _domain_error(request: Request, exc: ChatstackError) -> JSONResponse:
    return error_response(exc)


async def _bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
    return validation_response(exc)


async def _framework_error(request: Request, exc: FrameworkError) -> JSONResponse:
    return framework_response(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")


def _health() -> APIRouter:
    routes = APIRouter()

    @routes.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return routes
