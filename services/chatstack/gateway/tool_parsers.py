"""Tool calls read back from a model's text as it streams: one incremental parser per format.

Every parser consumes the text one character at a time and keeps all its state between calls,
so how the text is cut into deltas cannot change what it finds: the calls parsed from a stream
are the calls parsed from the whole text (vLLM's parsers re-parse partial JSON per delta and lose
arguments when one delta holds several tokens; these cannot). A call streams as OpenAI streams
it: its id and name once the name's string is complete, then its arguments' JSON text in
fragments as they arrive (held back until the name is known when a model writes them first).

Formats (`PARSERS`):
- `hermes`: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` anywhere in the text
  (Hermes, Qwen 2.5/3 and the tiny model's template); the text around calls is content;
- `llama3_json`: an answer that starts with `{` (or `<|python_tag|>`) is `;`-separated
  `{"name": ..., "parameters": {...}}` objects (Llama 3.x's JSON tool format); any other
  answer is text;
- `json_array`: a JSON array of `{"name", "arguments"}` objects, what a `required` tool choice
  constrains the answer to;
- `arguments`: the whole answer is the arguments of one call of a known function, what a named
  tool choice constrains the answer to.

Malformed markup degrades the way vLLM's does: a call whose object breaks before its name was
read is content (the raw text, as written); one that breaks after keeps what it streamed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from chatstack.core.chat_message import ToolCall

ToolFormat = Literal["hermes", "llama3_json"]
WHITESPACE = " \t\n\r"
ARGUMENT_KEYS = ("arguments", "parameters")


def new_call_id() -> str:
    """An OpenAI-style call id."""
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True)
class CallDelta:
    """Part of a tool call as it streams: `id` and `name` on its first delta only."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class Parsed:
    """What some text produced: content (text outside calls) and call deltas."""

    content: str = ""
    calls: list[CallDelta] = field(default_factory=list)


class _Value:
    """Where one JSON value ends, char by char: containers by depth (outside strings), strings by
    their closing quote, scalars at the first character that cannot continue them."""

    def __init__(self, first: str) -> None:
        self.depth = 1 if first in "{[" else 0
        self.in_string = first == '"'
        self.escaped = False
        self.scalar = first not in '{["'
        self.done = False

    def feed(self, ch: str) -> bool:
        """Whether `ch` (after the first character) belongs to the value; sets `done` at its end."""
        if self.scalar:
            if ch.isalnum() or ch in "+-.":
                return True
            self.done = True
            return False
        if self.in_string:
            if self.escaped:
                self.escaped = False
            elif ch == "\\":
                self.escaped = True
            elif ch == '"':
                self.in_string = False
                self.done = self.depth == 0
        elif ch == '"':
            self.in_string = True
        elif ch in "{[":
            self.depth += 1
        elif ch in "}]":
            self.depth -= 1
            self.done = self.depth == 0
        return True


class _CallObject:
    """One `{"name": ..., "arguments": ...}` object, char by char. `feed` answers "more",
    "done" (this character closed it) or "error"."""

    def __init__(self) -> None:
        self.state = "start"
        self.raw = ""  # every character taken, for a call that turns out to be text
        self.key = ""
        self.value: _Value | None = None
        self.name_raw = ""
        self.name: str | None = None
        self.arguments = ""
        self.has_arguments = False

    def feed(self, ch: str) -> str:
        self.raw += ch
        return self._step(ch)

    def _step(self, ch: str) -> str:
        s = self.state
        if s == "value":
            return self._value(ch)
        if ch in WHITESPACE and s != "key":
            return "more"
        if s == "start":
            return self._go("key_or_end") if ch == "{" else "error"
        if s == "key_or_end" and ch == "}":
            return "done"
        if s in ("key_or_end", "next_key"):
            if ch != '"':
                return "error"
            self.key = '"'
            return self._go("key")
        if s == "key":
            self.key += ch
            if ch == '"' and not _escapes_quote(self.key):
                return self._go("colon")
            return "more"
        if s == "colon":
            return self._go("value_start") if ch == ":" else "error"
        if s == "value_start":
            return self._start_value(ch)
        if s == "after_value":
            if ch == ",":
                return self._go("next_key")
            return "done" if ch == "}" else "error"
        return "error"

    def _go(self, state: str) -> str:
        self.state = state
        return "more"

    def _start_value(self, ch: str) -> str:
        key = _decode(self.key)
        if key == "name" and (ch != '"' or self.name is not None):
            return "error"
        if key in ARGUMENT_KEYS:
            if self.has_arguments:
                return "error"
            self.has_arguments = True
        self.key = key if isinstance(key, str) else ""
        self.value = _Value(ch)
        self._take(ch)
        self.state = "value"
        return "more"

    def _value(self, ch: str) -> str:
        assert self.value is not None
        if not self.value.feed(ch):  # a scalar ended: this character is the object's
            self.state = "after_value"
            return self._step(ch)
        self._take(ch)
        if self.value.done:
            if self.key == "name":
                name = _decode(self.name_raw)
                if not isinstance(name, str) or not name:
                    return "error"
                self.name = name
            self.state = "after_value"
        return "more"

    def _take(self, ch: str) -> None:
        if self.key == "name":
            self.name_raw += ch
        elif self.key in ARGUMENT_KEYS:
            self.arguments += ch


def _escapes_quote(raw: str) -> bool:
    """Whether the closing quote of `raw` is escaped (an odd run of backslashes before it)."""
    run = len(raw) - 1 - len(raw[:-1].rstrip("\\"))
    return run % 2 == 1


def _decode(raw: str) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        return None


class ToolCallParser:
    """The shared part of every format: calls numbered in order, each streamed as its name and
    arguments become known; content out. Subclasses move `feed_char` through their markup."""

    def __init__(self, call_id: Callable[[], str] = new_call_id) -> None:
        self._call_id = call_id
        self._out = Parsed()
        self._call: _CallObject | None = None
        self._index = -1
        self._named = False  # the current call's header went out
        self._sent = 0  # characters of the current call's arguments sent

    def feed(self, text: str) -> Parsed:
        """Content and call deltas of the next piece of text."""
        for ch in text:
            self.feed_char(ch)
        return self._take()

    def finish(self) -> Parsed:
        """What the end of the text releases (held-back content; a call cut short)."""
        self.end()
        return self._take()

    def feed_char(self, ch: str) -> None:
        """Consume one character."""
        raise NotImplementedError

    def end(self) -> None:
        """The text ended: release what is held."""
        if self._call is not None and not self._named:
            self._out.content += self._call.raw
        self._call = None

    def _take(self) -> Parsed:
        out, self._out = self._out, Parsed()
        return out

    def _open_call(self) -> None:
        self._call, self._named, self._sent = _CallObject(), False, 0

    def _call_char(self, ch: str, prefix: str = "") -> str:
        """Feed the open call; one that breaks or ends before its name is text ("error"): its
        raw text, after `prefix` (the markup that opened it), becomes content."""
        assert self._call is not None
        result = self._call.feed(ch)
        if result != "error":
            self._stream_call()
        if result != "more" and not self._named:  # broke, or ended, before a name: text
            self._out.content += prefix + self._call.raw
            result = "error"
        if result != "more":
            self._call = None
        return result

    def _stream_call(self) -> None:
        call = self._call
        assert call is not None
        if not self._named and call.name is not None:
            self._index += 1
            self._named = True
            self._out.calls.append(CallDelta(self._index, self._call_id(), call.name))
        if self._named and len(call.arguments) > self._sent:
            self._out.calls.append(CallDelta(self._index, arguments=call.arguments[self._sent:]))
            self._sent = len(call.arguments)


class _TagMatcher:
    """Holds back text that may be the start of a tag until it is or is not."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.held = ""

    def feed(self, ch: str) -> tuple[str, bool]:
        """(text released as content, whether the tag just completed)."""
        candidate = self.held + ch
        if self.tag.startswith(candidate):
            self.held = "" if candidate == self.tag else candidate
            return "", candidate == self.tag
        released, self.held = self.held, ""
        if self.tag.startswith(ch):
            self.held = ch
            return released, False
        return released + ch, False


class HermesParser(ToolCallParser):
    """`<tool_call>{...}</tool_call>` anywhere in the text (see module docstring)."""

    START, END = "<tool_call>", "</tool_call>"

    def __init__(self, call_id: Callable[[], str] = new_call_id) -> None:
        super().__init__(call_id)
        self._start = _TagMatcher(self.START)
        self._closing: str | None = None  # after a call's object: the end tag read so far

    def feed_char(self, ch: str) -> None:
        if self._call is not None:
            if self._call_char(ch, self.START) == "done":
                self._closing = ""
            return
        if self._closing is not None:
            candidate = self._closing + ch
            if not candidate.strip():
                return  # whitespace before the end tag
            if self.END.startswith(candidate):
                self._closing = None if candidate == self.END else candidate
                return
            self._closing = None  # no end tag (a partial one is dropped): text again
        released, opened = self._start.feed(ch)
        self._out.content += released
        if opened:
            self._open_call()

    def end(self) -> None:
        super().end()
        self._out.content += self._start.held
        self._start.held = ""


class Llama3JsonParser(ToolCallParser):
    """`;`-separated call objects when the answer starts with one (see module docstring)."""

    TAG = "<|python_tag|>"

    def __init__(self, call_id: Callable[[], str] = new_call_id) -> None:
        super().__init__(call_id)
        self._state = "lead"  # lead, tag, next, call, between, text
        self._held = ""  # leading whitespace, then the python tag as read

    def feed_char(self, ch: str) -> None:
        state = self._state
        if state == "call":
            result = self._call_char(ch)
            self._state = "text" if result == "error" else "between" if result == "done" else "call"
        elif state == "text":
            self._out.content += ch
        elif state == "lead" and ch in WHITESPACE:
            self._held += ch
        elif state in ("lead", "next") and ch == "{":
            self._held, self._state = "", "call"
            self._open_call()
            self._call_char(ch)
        elif state in ("lead", "tag") and self.TAG.startswith(self._held.lstrip() + ch):
            self._held += ch
            self._state = "next" if self._held.lstrip() == self.TAG else "tag"
        elif state in ("next", "between") and ch in WHITESPACE:
            pass
        elif state == "between" and ch == ";":
            self._state = "next"
        else:  # not a call (or text after the calls)
            self._out.content += (self._held if state in ("lead", "tag") else "") + ch
            self._held, self._state = "", "text"

    def end(self) -> None:
        super().end()
        if self._state in ("lead", "tag"):
            self._out.content += self._held
        self._held = ""


class JsonArrayParser(ToolCallParser):
    """`[{"name": ..., "arguments": ...}, ...]` (what a required tool choice constrains to)."""

    def __init__(self, call_id: Callable[[], str] = new_call_id) -> None:
        super().__init__(call_id)
        self._state = "start"  # start, item, call, after, end, text
        self._raw = ""

    def feed_char(self, ch: str) -> None:
        if self._state == "call":
            if self._call_char(ch) == "error":
                self._state = "text"
            elif self._call is None:
                self._state = "after"
            return
        if self._state == "text":
            self._out.content += ch
        elif ch in WHITESPACE or self._state == "end":
            return
        elif self._state == "start" and ch == "[":
            self._state = "item"
        elif self._state == "item" and ch == "{":
            self._state = "call"
            self._open_call()
            self._call_char(ch)
        elif self._state == "after" and ch in ",]":
            self._state = "item" if ch == "," else "end"
        else:
            self._state = "text"
            self._out.content += ch


class ArgumentsParser(ToolCallParser):
    """The whole text is the arguments of one call of `name` (a named tool choice)."""

    def __init__(self, name: str, call_id: Callable[[], str] = new_call_id) -> None:
        super().__init__(call_id)
        self._name = name

    def feed_char(self, ch: str) -> None:
        if self._index < 0:
            self._index = 0
            self._out.calls.append(CallDelta(0, self._call_id(), self._name))
        self._out.calls.append(CallDelta(0, arguments=ch))

    def _take(self) -> Parsed:
        out = super()._take()
        if len(out.calls) > 1:  # one fragment per piece of text, not per character
            head = [c for c in out.calls if c.name]
            text = "".join(c.arguments for c in out.calls)
            out.calls = [*head, CallDelta(0, arguments=text)]
        return out


PARSERS: dict[str, Callable[[], ToolCallParser]] = {
    "hermes": HermesParser, "llama3_json": Llama3JsonParser, "json_array": JsonArrayParser,
}


class ToolCallCollector:
    """Call deltas merged into whole calls (what a non-streamed answer reports)."""

    def __init__(self, limit: int | None = None) -> None:
        self.calls: list[ToolCall] = []
        self.limit = limit  # keep only the first `limit` calls (parallel_tool_calls false: 1)

    def keep(self, deltas: list[CallDelta]) -> list[CallDelta]:
        """Record `deltas`; returns those within the limit."""
        kept = [d for d in deltas if self.limit is None or d.index < self.limit]
        for d in kept:
            if d.index == len(self.calls):
                self.calls.append(ToolCall(d.id, d.name, ""))
            c = self.calls[d.index]
            self.calls[d.index] = ToolCall(c.id, c.name, c.arguments + d.arguments)
        return kept
