"""Errors in OpenAI's JSON shape, with the HTTP status of the domain error's one mapping
(`chatstack.core.errors`: domain error → gRPC status → HTTP status), so the official SDKs raise
their own classes (400 BadRequestError, 401 AuthenticationError, 404 NotFoundError, 409
ConflictError, 429 RateLimitError, 5xx InternalServerError)."""

from __future__ import annotations

import re
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from chatstack.core import errors

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 409: "conflict_error", 429: "rate_limit_error",
               499: "cancelled", 503: "service_unavailable", 504: "timeout"}
# A domain error's message starts with the field it is about: "messages: ...", "n: ...".
_FIELD = re.compile(r"^([A-Za-z_][\w.\[\]]*): ")


def error_body(status: int, message: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object."""
    if param is None:
        match = _FIELD.match(message)
        param = match.group(1) if match else None
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"),
                      "param": param, "code": code}}


def error_response(exc: errors.ChatstackError) -> JSONResponse:
    """A domain error as an HTTP response."""
    status = errors.http_status_for(exc)
    return JSONResponse(error_body(status, str(exc)), status_code=status)


def validation_response(exc: RequestValidationError) -> JSONResponse:
    """A malformed body: 400 naming the field (OpenAI answers 400, FastAPI's default is 422)."""
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    field = ".".join(loc)
    message = f"{field}: {first.get('msg')}" if field else str(first.get("msg"))
    return JSONResponse(error_body(400, message, field or None), status_code=400)
