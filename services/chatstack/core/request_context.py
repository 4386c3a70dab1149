"""Request ids: taken from `x-request-id` metadata or made, carried into logs and downstream calls."""

from __future__ import annotations

import contextvars
import logging
import time
import uuid
from collections.abc import Iterable

REQUEST_ID_KEY = "x-request-id"
OWNER_KEY = "x-chatstack-owner"

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)
_transport: contextvars.ContextVar[str] = contextvars.ContextVar("transport", default="grpc")


def new_request_id() -> str:
    """A fresh random request id."""
    return uuid.uuid4().hex


def current_request_id() -> str:
    """The request id of the RPC being served by this task, or "-" outside one."""
    return _request_id.get()


def set_request_id(request_id: str) -> None:
    """Bind a request id to the current task (each RPC runs in its own task and context)."""
    _request_id.set(request_id)


def set_transport(transport: str) -> None:
    """Name the front door the current call came through ("grpc", "http"), for metric labels:
    the flows themselves do not know it."""
    _transport.set(transport)


def current_transport() -> str:
    """The front door of the call being served ("grpc" unless an adapter said otherwise)."""
    return _transport.get()


def set_deadline(remaining_seconds: float | None) -> None:
    """Bind the RPC's deadline (seconds from now, None = none) to the current task."""
    _deadline.set(None if remaining_seconds is None else time.monotonic() + remaining_seconds)


def remaining_seconds() -> float | None:
    """Seconds left until the current RPC's deadline, or None if it has none."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def bounded_timeout(limit: float, margin: float = 0.05) -> float:
    """`limit`, shortened to end `margin` seconds before the RPC's deadline (at least 1 ms)."""
    left = remaining_seconds()
    if left is None:
        return limit
    return max(0.001, min(limit, left - margin))


def metadata_value(metadata: Iterable[tuple[str, str | bytes]] | None, key: str) -> str | None:
    """First value of `key` in gRPC invocation metadata, or None."""
    for k, v in metadata or ():
        if k == key:
            return v.decode() if isinstance(v, bytes) else v
    return None


def downstream_metadata(extra: dict[str, str] | None = None) -> tuple[tuple[str, str], ...]:
    """Metadata for a downstream call: the current request id plus `extra` {key: value}."""
    return ((REQUEST_ID_KEY, current_request_id()), *(extra or {}).items())


class RequestIdLogFilter(logging.Filter):
    """Adds `request_id` to every log record so the format can print it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True


def configure_logging(level: str, service: str) -> None:
    """Log lines with time, level, service, request id and logger name."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdLogFilter())
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s %(levelname)s {service} [%(request_id)s] %(name)s: %(message)s"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
