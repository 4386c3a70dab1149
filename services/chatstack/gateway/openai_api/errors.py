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
               404: "not_found_error", 405: "invalid_request_error", 409: "conflict_error",
               413: "invalid_request_error", 429: "rate_limit_error",
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


def domain_error_body(exc: errors.ChatstackError) -> tuple[int, dict[str, Any]]:
    """A domain error's HTTP status and body (with its machine code)."""
    status = errors.http_status_for(exc)
    return status, error_body(status, str(exc), code=errors.code_for(exc))


def error_response(exc: errors.ChatstackError) -> JSONResponse:
    """A domain error as an HTTP response."""
    status, body = domain_error_body(exc)
    return JSONResponse(body, status_code=status)


def validation_response(exc: RequestValidationError) -> JSONResponse:
    """A malformed body: 400 naming the field (OpenAI answers 400, FastAPI's default is 422);
    a body that is not JSON at all says so."""
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return JSONResponse(error_body(400, f"body: not valid JSON ({first.get('msg')})", "body",
                                       code="invalid_json"), status_code=400)
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    field = ".".join(loc)
    message = f"{field}: {first.get('msg')}" if field else str(first.get("msg"))
    return JSONResponse(error_body(400, message, field or None, code="invalid_request"), status_code=400)


# What the framework itself answers (no route, wrong method, ...), by status: OpenAI's shape with a code.
FRAMEWORK_CODES = {404: "unknown_route", 405: "method_not_allowed"}


def framework_response(status: int, detail: str) -> JSONResponse:
    """An error raised by the framework (Starlette's HTTPException) in OpenAI's shape."""
    return JSONResponse(error_body(status, detail, code=FRAMEWORK_CODES.get(status, "http_error")),
                        status_code=status)
