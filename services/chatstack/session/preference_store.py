"""PreferenceStore: the deployment's preference events in a Redis Stream, beside the sessions.

One stream per deployment (`<prefix>preferences`), appended by `record` (one Lua script: the
owner check, the append, trimming to `preferences_max_events` and `preferences_retention_days`,
and the session's index of its events). Events are opaque payloads here (the servicer stores
serialized `PreferenceEvent`s) with the fields export filters on: kind, owner, session. Stream ids
are `<milliseconds>-<sequence>`, so "since" is a range start. A session's delete removes its
events (see delete.lua); a feedback event replaces the earlier feedback on its turn.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection
from dataclasses import dataclass
from typing import Any

from chatstack.core.errors import InvalidRequest
from chatstack.core.identifiers import check_id
from chatstack.session.metrics import SessionMetrics
from chatstack.session.store import RedisSessionStore

KINDS = ("feedback", "best_of", "regenerate", "edit", "undo", "moderated")
_MAX_ID_PART = 2**64 - 1  # each part of a stream id is an unsigned 64-bit integer
_EXPORT_BATCH = 500


@dataclass(frozen=True)
class StoredPreference:
    """One event as stored: its stream id, the fields export filters on, and its payload."""

    event_id: str
    kind: str
    owner: str
    session_id: str
    payload: bytes


@dataclass(frozen=True)
class Recorded:
    """What `record` did: the new event's id, and the feedback it replaced ('' if none)."""

    event_id: str
    replaced_event_id: str


class PreferenceStore:
    """Preference events of the sessions of `sessions` (see module docstring)."""

    def __init__(self, sessions: RedisSessionStore, metrics: SessionMetrics) -> None:
        self.sessions = sessions
        self.config = sessions.config
        self.metrics = metrics

    async def record(self, owner: str, session_id: str, kind: str, turn_id: str, payload: bytes) -> Recorded:
        """Append an event about the owner's session (NOT_FOUND if it is not theirs)."""
        check_id(session_id, "event.session_id")
        if kind not in KINDS:
            raise InvalidRequest(f"event.kind: {kind or 'unspecified'} is not one of {', '.join(KINDS)}")
        if kind == "feedback":
            check_id(turn_id, "event.turn_id")
        if len(payload) > self.config.preferences_max_event_bytes:
            raise InvalidRequest(f"event: {len(payload)} bytes exceed the limit of "
                                 f"{self.config.preferences_max_event_bytes}")
        retention_ms = int(self.config.preferences_retention_days * 86_400_000)
        event_id, replaced = await self.sessions.run("record_preference", [
            self.sessions.header_key(session_id), self.sessions.preference_stream,
            *self.sessions.preference_keys(session_id),
        ], [owner, session_id, kind, turn_id, payload, self.config.preferences_max_events, retention_ms])
        self.metrics.preference_events.labels(kind).inc()
        return Recorded(_s(event_id), _s(replaced))

    async def export(self, after_event_id: str = "", since_ms: int = 0, owner: str = "",
                     kinds: Collection[str] = (), limit: int = 0) -> AsyncGenerator[StoredPreference]:
        """Stored events oldest first, filtered; read in batches, so memory stays bounded."""
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise InvalidRequest(f"kinds: {', '.join(sorted(unknown))} not among {', '.join(KINDS)}")
        start = f"({after_event_id}" if after_event_id else "-"
        if after_event_id:
            _check_stream_id(after_event_id)
        if since_ms > _MAX_ID_PART or after_event_id == f"{_MAX_ID_PART}-{_MAX_ID_PART}":
            return  # later than any stream id
        if since_ms and (not after_event_id or int(after_event_id.split("-")[0]) < since_ms):
            start = f"{since_ms}-0"
        sent = 0
        while True:
            rows = await self._batch(start)
            for raw_id, fields in rows:
                event = _stored(raw_id, fields)
                if (owner and event.owner != owner) or (kinds and event.kind not in kinds):
                    continue
                yield event
                self.metrics.preferences_exported.labels(event.kind).inc()
                sent += 1
                if limit and sent >= limit:
                    return
            if len(rows) < _EXPORT_BATCH:
                return
            start = f"({_s(rows[-1][0])}"


    async def _batch(self, start: str) -> list[tuple[Any, Any]]:
        """Up to a batch of stream entries from `start` (inclusive, or exclusive with '(')."""
        async def read() -> list[tuple[Any, Any]]:
            return list(await self.sessions.redis.xrange(
                self.sessions.preference_stream, min=start, max="+", count=_EXPORT_BATCH) or [])
        return await self.sessions.call("export_preferences", read)


def _check_stream_id(value: str) -> None:
    ms, _, seq = value.partition("-")
    if not (ms.isascii() and ms.isdigit()) or (seq and not (seq.isascii() and seq.isdigit())) \
            or int(ms) > _MAX_ID_PART or (seq and int(seq) > _MAX_ID_PART):
        raise InvalidRequest(f"after_event_id: {value[:40]!r} is not a stream id (<milliseconds>-<sequence>)")


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _stored(raw_id: Any, fields: dict[Any, Any]) -> StoredPreference:
    f = {_s(k): v for k, v in fields.items()}
    payload = f.get("e", b"")
    return StoredPreference(_s(raw_id), _s(f.get("k", b"")), _s(f.get("o", b"")), _s(f.get("s", b"")),
                            payload if isinstance(payload, bytes) else str(payload).encode())
