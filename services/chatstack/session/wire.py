"""The session service's records (`chatstack.session.model`) on the wire and back: used by the
session servicer (records out) and by its clients, the gateway's typed session client (records in).
Lossless both ways: a record read back from its message is the record."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.timestamp_pb2 import Timestamp

from chatstack.core.proto_convert import role_name, role_value, tool_calls_from_proto, tool_calls_to_proto
from chatstack.session.model import ContextWindow, SessionHeader, Turn
from chatstack.v1 import session_pb2


def timestamp(ms: int) -> Timestamp:
    """Epoch milliseconds as a Timestamp."""
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def header_to_proto(h: SessionHeader) -> session_pb2.Session:
    """SessionHeader -> Session."""
    return session_pb2.Session(
        session_id=h.session_id, owner=h.owner, create_time=timestamp(h.create_time_ms),
        update_time=timestamp(h.update_time_ms), ttl_seconds=h.ttl_seconds,
        metadata=h.metadata, system_prompt=h.system_prompt,
        system_prompt_tokens=h.system_prompt_tokens, version=h.version,
        turn_count=h.turn_count, total_tokens=h.total_tokens,
    )


def header_from_proto(s: session_pb2.Session) -> SessionHeader:
    """Session -> SessionHeader."""
    return SessionHeader(s.session_id, s.owner, s.create_time.ToMilliseconds(),
                         s.update_time.ToMilliseconds(), s.ttl_seconds, dict(s.metadata), s.system_prompt,
                         s.system_prompt_tokens, s.version, s.turn_count, s.total_tokens)


def turn_to_proto(t: Turn) -> session_pb2.Turn:
    """Turn -> Turn message."""
    return session_pb2.Turn(
        turn_id=t.turn_id, role=role_value(t.role), content=t.content,  # type: ignore[arg-type]
        token_count=t.token_count, create_time=timestamp(t.create_time_ms),
        metadata=t.metadata, position=t.position, tool_calls=tool_calls_to_proto(t.tool_calls),
        tool_call_id=t.tool_call_id,
    )


def turn_from_proto(t: session_pb2.Turn) -> Turn:
    """Turn message -> Turn (a role no name stands for reads as "")."""
    return Turn(t.turn_id, role_name(t.role), t.content, t.token_count, t.create_time.ToMilliseconds(),
                dict(t.metadata), t.position, tool_calls_from_proto(t.tool_calls), t.tool_call_id)


def turns_from_proto(turns: Iterable[session_pb2.Turn]) -> list[Turn]:
    """Turn messages -> Turns, in order."""
    return [turn_from_proto(t) for t in turns]


def context_to_proto(w: ContextWindow) -> session_pb2.GetContextResponse:
    """ContextWindow -> GetContextResponse."""
    return session_pb2.GetContextResponse(
        system_prompt=w.system_prompt, system_prompt_tokens=w.system_prompt_tokens,
        turns=[turn_to_proto(t) for t in w.turns], total_tokens=w.total_tokens,
        truncated=w.truncated, omitted_turns=w.omitted_turns, version=w.version,
    )


def context_from_proto(r: session_pb2.GetContextResponse) -> ContextWindow:
    """GetContextResponse -> ContextWindow."""
    return ContextWindow(r.system_prompt, r.system_prompt_tokens, turns_from_proto(r.turns), r.total_tokens,
                         r.omitted_turns, r.version)
