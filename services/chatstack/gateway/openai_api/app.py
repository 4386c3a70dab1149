"""The OpenAI-compatible HTTP API of the gateway: a FastAPI app over the same transport-free
flows as the gRPC servicer. Handlers only authenticate, translate and map errors.

Every request: `Authorization: Bearer <key>` (the gRPC keys and owners), and the scope of
`http_scope.HttpCallScope` around it (request id, deadline, body limit, cancel on disconnect,
500s, metrics, access log). Every error, the framework's own included, is in OpenAI's shape with
a machine `code`; a request field that would change the answer and is not implemented is a 400
naming it (`schemas.check_supported`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Literal, cast

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as FrameworkError
from starlette.types import Send

from chatstack.core.errors import ChatstackError, NotFound
from chatstack.gateway.auth import ApiKeyAuthenticator
from chatstack.gateway.completions import Completions
from chatstack.gateway.openai_api.chat_completions import ChatCompletionsHandler
from chatstack.gateway.openai_api.errors import error_response, framework_response, validation_response
from chatstack.gateway.openai_api.http_scope import HttpCallScope, HttpMetrics
from chatstack.gateway.openai_api.responses_api import ResponsesHandler
from chatstack.gateway.openai_api.schemas import (
    ChatCompletionRequest,
    ConversationCreateRequest,
    FeedbackRequest,
    ResponseCreateRequest,
    check_supported,
)
from chatstack.gateway.responses import Responses

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpLimits:
    """The HTTP door's limits (the gateway's config)."""

    max_request_bytes: int = 16 << 20
    default_deadline_seconds: float = 120.0
    max_deadline_seconds: float = 600.0


def build_app(completions: Completions, responses: Responses, auth: ApiKeyAuthenticator,
              metrics: HttpMetrics, limits: HttpLimits = HttpLimits()) -> FastAPI:
    """The app (see module docstring)."""
    app = FastAPI(title="chatstack", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(HttpCallScope, metrics=metrics, max_request_bytes=limits.max_request_bytes,
                       default_deadline_seconds=limits.default_deadline_seconds,
                       max_deadline_seconds=limits.max_deadline_seconds)
    handler = ChatCompletionsHandler(completions)
    stored = ResponsesHandler(responses, completions)

    @app.exception_handler(ChatstackError)
    async def domain_error(request: Request, exc: ChatstackError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_response(exc)

    @app.exception_handler(FrameworkError)
    async def framework_error(request: Request, exc: FrameworkError) -> JSONResponse:
        return framework_response(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

    def owner(request: Request) -> str:
        return auth.owner_for(request.headers.get("authorization"))

    async def model_name() -> str:
        info = await completions.generation.info()
        return info.model

    async def served(requested: str) -> str:
        """The served model's name, if `requested` is it (404 naming the served one otherwise)."""
        name = await model_name()
        if requested != name:
            raise NotFound(f"model: {requested!r} is not served here (GET /v1/models lists {name!r})")
        return name

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        owner(request)
        name = await model_name()
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "chatstack"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        owner(request)
        check_supported(body)
        name = await served(body.model)
        if not body.stream:
            return await handler.complete(body, name)
        return await _event_stream(handler.stream(body, name))

    @app.post("/v1/responses", response_model=None)
    async def create_response(body: ResponseCreateRequest, request: Request) -> Any:
        who = owner(request)
        check_supported(body)
        name = await served(body.model)
        if not body.stream:
            return await stored.create(who, body, name)
        return await _event_stream(stored.stream(who, body, name))

    @app.get("/v1/responses/{response_id}")
    async def get_response(response_id: str, request: Request) -> dict[str, Any]:
        return await stored.get(owner(request), response_id, await model_name())

    @app.delete("/v1/responses/{response_id}")
    async def delete_response(response_id: str, request: Request) -> dict[str, Any]:
        return await stored.delete(owner(request), response_id)

    @app.post("/v1/responses/{response_id}/feedback")
    async def response_feedback(response_id: str, body: FeedbackRequest, request: Request) -> dict[str, Any]:
        return await stored.feedback(owner(request), response_id, body)

    @app.post("/v1/conversations")
    async def create_conversation(body: ConversationCreateRequest, request: Request) -> dict[str, Any]:
        who = owner(request)
        check_supported(body)
        return await stored.create_conversation(who, body)

    @app.get("/v1/conversations/{conversation_id}")
    async def get_conversation(conversation_id: str, request: Request) -> dict[str, Any]:
        return await stored.get_conversation(owner(request), conversation_id)

    @app.delete("/v1/conversations/{conversation_id}")
    async def delete_conversation(conversation_id: str, request: Request) -> dict[str, Any]:
        return await stored.delete_conversation(owner(request), conversation_id)

    @app.get("/v1/conversations/{conversation_id}/items")
    async def list_items(conversation_id: str, request: Request, limit: int = Query(20, ge=1, le=100),
                         order: Literal["asc", "desc"] = "desc", after: str | None = None) -> dict[str, Any]:
        return await stored.items(owner(request), conversation_id, limit, order, after)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


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


async def _event_stream(events: AsyncGenerator[str]) -> StreamingResponse:
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
