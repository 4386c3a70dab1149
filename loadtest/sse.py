"""Server-sent events and the two OpenAI streams the gateway's HTTP API sends, parsed without Locust.

`SseParser` follows the HTML standard's event-stream rules: lines end in LF, CRLF or CR (also
when a chunk boundary falls between CR and LF), `:` starts a comment, `data:` lines of one event
join with LF, a blank line dispatches the event, an event without data is dropped, and a partial
event when the stream ends is discarded. The readers turn events into what a load test measures
(content deltas, the end of the stream) and raise StreamError on an `error` event, a malformed
event or a stream that ends too early.

No Locust import here (Locust monkey-patches the process with gevent), so tests import it directly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

DONE = "[DONE]"  # chat.completions' last `data:`
_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = "\ufeff"


class StreamError(Exception):
    """An error event, or a stream that breaks its protocol (the request fails with this message)."""


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event: its type (`message` when the stream names none) and its data."""

    event: str
    data: str
    id: str | None = None


@dataclass
class SseParser:
    """Incremental event-stream parser: feed() it bytes as they arrive, get the completed events."""

    _buffer: bytes = b""
    _after_cr: bool = False  # the last line ended in CR: a LF starting the next chunk is part of it
    _started: bool = False
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events completed by `chunk` (possibly none)."""
        buffer = self._buffer + chunk
        start = 0
        if self._after_cr and buffer[:1] == b"\n":
            start = 1
        self._after_cr = False
        events: list[SseEvent] = []
        while match := _EOL.search(buffer, start):
            if match.group() == b"\r" and match.end() == len(buffer):
                self._after_cr = True
            event = self._line(buffer[start:match.start()].decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
            start = match.end()
        self._buffer = buffer[start:]
        return events

    @property
    def pending(self) -> bool:
        """True if the stream so far ends inside an event (its end would discard it)."""
        return bool(self._buffer or self._data or self._event)

    def _line(self, line: str) -> SseEvent | None:
        if not self._started:
            self._started = True
            line = line.removeprefix(_BOM)
        if not line:  # a blank line dispatches the event
            data, self._data = self._data, []
            event, self._event = self._event, ""
            return SseEvent(event or "message", "\n".join(data), self._id) if data else None
        if line.startswith(":"):
            return None  # a comment (a keep-alive)
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None  # `retry` and unknown fields are ignored


class StreamReader(Protocol):
    """Takes a stream's events: add() says whether one carried generated text; finish() checks the end."""

    def add(self, event: SseEvent) -> bool: ...
    def finish(self) -> None: ...


def _payload(event: SseEvent) -> dict[str, Any]:
    try:
        payload = json.loads(event.data)
    except json.JSONDecodeError:
        raise StreamError(f"{event.event} event: data is not JSON: {event.data[:80]!r}") from None
    if not isinstance(payload, dict):
        raise StreamError(f"{event.event} event: data is not a JSON object: {event.data[:80]!r}")
    return payload


def error_message(error: Any) -> str:
    """The text of an OpenAI error object (`{"message": ..., "type": ..., "code": ...}`) or a bare value."""
    if isinstance(error, dict):
        kind = error.get("type") or error.get("code")
        message = str(error.get("message") or error)
        return f"{kind}: {message}" if kind else message
    return str(error)


@dataclass
class ChatCompletionStream:
    """A streamed `POST /v1/chat/completions`: `chat.completion.chunk` events, then `data: [DONE]`.

    An `error` event, or a chunk whose `error` is set (the gateway's error after the first chunk),
    fails it; so does ending without [DONE], without a finish_reason, or (`expect_usage`, for
    `stream_options.include_usage`) without the usage chunk.
    """

    expect_usage: bool = False
    deltas: int = 0  # chunks with content
    text: str = ""
    finish_reasons: list[str] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    done: bool = False

    def add(self, event: SseEvent) -> bool:
        """Take one event; True if it carried content."""
        if self.done:
            raise StreamError(f"{event.event} event after data: {DONE}")
        if event.data.strip() == DONE:
            self.done = True
            return False
        payload = _payload(event)
        if event.event == "error" or payload.get("error"):
            raise StreamError(error_message(payload.get("error") or payload))
        if payload.get("object") != "chat.completion.chunk":
            raise StreamError(f"not a chat.completion.chunk: object {payload.get('object')!r}")
        content = False
        for choice in payload.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                self.text += piece
                content = True
            if choice.get("finish_reason"):
                self.finish_reasons.append(str(choice["finish_reason"]))
        if payload.get("usage"):
            self.usage = payload["usage"]
        self.deltas += content
        return content

    def finish(self) -> None:
        """StreamError unless the stream ended as it should."""
        if not self.done:
            raise StreamError(f"stream ended without data: {DONE}")
        if not self.finish_reasons:
            raise StreamError("stream ended without a finish_reason")
        if self.expect_usage and self.usage is None:
            raise StreamError("stream ended without the usage chunk (stream_options.include_usage)")


@dataclass
class ResponseStream:
    """A streamed `POST /v1/responses`: `response.created` … `response.output_text.delta` … and
    `response.completed` (or `response.incomplete`), whose response's `id` continues the conversation.

    An `error` or `response.failed` event fails it, as does ending without the final response.
    """

    deltas: int = 0
    text: str = ""
    response_id: str = ""  # known from response.created on
    conversation_id: str = ""  # likewise, when the response is stored
    response: dict[str, Any] | None = None  # the final response
    kinds: list[str] = field(default_factory=list)

    def add(self, event: SseEvent) -> bool:
        """Take one event; True if it carried output text."""
        if event.data.strip() == DONE:
            return False  # not sent by OpenAI's Responses API, harmless if a server adds it
        payload = _payload(event)
        kind = event.event if event.event != "message" else str(payload.get("type", "message"))
        self.kinds.append(kind)
        if kind == "error":  # {"type": "error", "code": ..., "message": ...}: `type` is the event's
            raise StreamError(error_message(payload.get("error") or {"code": payload.get("code"),
                                                                     "message": payload.get("message")}))
        response = payload.get("response")
        if isinstance(response, dict):
            self._note(response)
        if kind == "response.failed":
            raise StreamError("response.failed: " + error_message((response or {}).get("error") or payload))
        if kind in ("response.completed", "response.incomplete"):
            if self.response is not None:
                raise StreamError(f"{kind} after the response was complete")
            if not isinstance(response, dict) or not response.get("id"):
                raise StreamError(f"{kind} without a response id")
            self.response = response
        elif kind == "response.output_text.delta" and payload.get("delta"):
            if self.response is not None:
                raise StreamError("output text after the response was complete")
            self.text += str(payload["delta"])
            self.deltas += 1
            return True
        return False

    def _note(self, response: dict[str, Any]) -> None:
        self.response_id = str(response.get("id") or self.response_id)
        conversation = response.get("conversation")
        if isinstance(conversation, dict) and conversation.get("id"):
            self.conversation_id = str(conversation["id"])

    def finish(self) -> None:
        """StreamError unless the final response arrived."""
        if self.response is None:
            seen = ", ".join(dict.fromkeys(self.kinds)) or "no events"
            raise StreamError(f"stream ended without response.completed (after: {seen})")
