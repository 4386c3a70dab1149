"""SessionService servicer: owner from metadata, proto <-> store, nothing else."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Collection
from contextlib import aclosing
from typing import Protocol

import grpc

from chatstack.core.errors import InvalidRequest, Unauthenticated
from chatstack.core.page_tokens import decode_page_token, encode_page_token
from chatstack.core.proto_convert import role_name, tool_calls_from_proto
from chatstack.core.request_context import OWNER_KEY, metadata_value
from chatstack.session.model import (
    ContextWindow,
    NewSession,
    NewTurn,
    PopResult,
    PushResult,
    SessionHeader,
    SessionPage,
    Turn,
    TurnPage,
)
from chatstack.session.preference_store import Recorded, StoredPreference
from chatstack.session.wire import context_to_proto, header_to_proto, turn_to_proto
from chatstack.v1 import preference_pb2, session_pb2, session_pb2_grpc

log = logging.getLogger(__name__)
DEFAULT_SESSION_PAGE, MAX_SESSION_PAGE = 50, 500
DEFAULT_TURN_PAGE, MAX_TURN_PAGE = 100, 1000


class SessionStore(Protocol):
    """What the servicer needs from a store (RedisSessionStore implements it)."""

    async def create(self, owner: str, new: NewSession) -> SessionHeader: ...
    async def get(self, owner: str, sid: str) -> SessionHeader: ...
    async def delete(self, owner: str, sid: str, expected_version: int | None = None) -> None: ...
    async def push(self, owner: str, sid: str, turn: NewTurn, expected_version: int | None = None,
                   pending_ms: int = 0, commit: str = "", replace: str = "",
                   commit_session: bool = False, join: str = "") -> PushResult: ...
    async def pop(self, owner: str, sid: str, expected_version: int | None = None,
                  pending: str = "", count: int = 1) -> PopResult: ...
    async def peek(self, owner: str, sid: str, n: int) -> TurnPage: ...
    async def list_turns(self, owner: str, sid: str, offset: int, limit: int) -> TurnPage: ...
    async def get_turns(self, owner: str, sid: str, turn_id: str, count: int = 1) -> TurnPage: ...
    async def context(self, owner: str, sid: str, token_budget: int) -> ContextWindow: ...
    async def fork(self, owner: str, sid: str, keep_turns: int | None, before_turn_id: str = "",
                   expected_version: int | None = None, metadata: dict[str, str] | None = None,
                   new_session_id: str = "", pending_ms: int = 0) -> SessionHeader: ...
    async def list_sessions(self, owner: str, offset: int, limit: int) -> SessionPage: ...
    async def annotate(self, owner: str, sid: str, turn_id: str, metadata: dict[str, str]) -> Turn: ...


def page_size(requested: int, default: int, maximum: int) -> int:
    """Clamp a requested page size."""
    return min(requested or default, maximum)


def _next_token(kind: str, next_offset: int | None) -> str:
    return "" if next_offset is None else encode_page_token(kind, next_offset)


def owner_of(context: grpc.aio.ServicerContext) -> str:
    """The caller's owner id from `x-chatstack-owner` metadata."""
    owner = metadata_value(context.invocation_metadata(), OWNER_KEY)
    if not owner:
        raise Unauthenticated(f"missing owner identity ({OWNER_KEY} metadata)")
    return owner


def _expected(request: object) -> int | None:
    return request.expected_version if request.HasField("expected_version") else None  # type: ignore[attr-defined]


class Preferences(Protocol):
    """What the servicer needs from a preference store (PreferenceStore implements it)."""

    async def record(self, owner: str, session_id: str, kind: str, turn_id: str,
                     payload: bytes) -> Recorded: ...
    def export(self, after_event_id: str = "", since_ms: int = 0, owner: str = "",
               kinds: Collection[str] = (), limit: int = 0) -> AsyncGenerator[StoredPreference]: ...


MAX_TIMESTAMP_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z, the largest Timestamp
KNOWN_KINDS = frozenset(v for v in preference_pb2.PreferenceKind.values() if v)


def _kind_name(kind: int) -> str:
    """'best_of' for PREFERENCE_KIND_BEST_OF; '' for UNSPECIFIED or a value the enum lacks."""
    if kind not in KNOWN_KINDS:
        return ""
    return preference_pb2.PreferenceKind.Name(kind).removeprefix("PREFERENCE_KIND_").lower()


class SessionServicer(session_pb2_grpc.SessionServiceServicer):
    """Serves SessionService from a SessionStore (and its preference events from Preferences)."""

    def __init__(self, store: SessionStore, preferences: Preferences) -> None:
        self.store = store
        self.preferences = preferences

    async def CreateSession(self, request: session_pb2.CreateSessionRequest,
                            context: grpc.aio.ServicerContext) -> session_pb2.CreateSessionResponse:
        """Create a session."""
        header = await self.store.create(owner_of(context), NewSession(
            session_id=request.session_id, system_prompt=request.system_prompt,
            system_prompt_tokens=request.system_prompt_tokens, metadata=dict(request.metadata),
            ttl_seconds=request.ttl_seconds, pending_ms=request.pending_ms))
        return session_pb2.CreateSessionResponse(session=header_to_proto(header))

    async def GetSession(self, request: session_pb2.GetSessionRequest,
                         context: grpc.aio.ServicerContext) -> session_pb2.GetSessionResponse:
        """Read a session header."""
        header = await self.store.get(owner_of(context), request.session_id)
        return session_pb2.GetSessionResponse(session=header_to_proto(header))

    async def DeleteSession(self, request: session_pb2.DeleteSessionRequest,
                            context: grpc.aio.ServicerContext) -> session_pb2.DeleteSessionResponse:
        """Delete a session."""
        await self.store.delete(owner_of(context), request.session_id, _expected(request))
        return session_pb2.DeleteSessionResponse()

    async def ListSessions(self, request: session_pb2.ListSessionsRequest,
                           context: grpc.aio.ServicerContext) -> session_pb2.ListSessionsResponse:
        """List the caller's sessions, newest first."""
        page = await self.store.list_sessions(
            owner_of(context), decode_page_token(request.page_token, "sessions"),
            page_size(request.page_size, DEFAULT_SESSION_PAGE, MAX_SESSION_PAGE))
        return session_pb2.ListSessionsResponse(
            sessions=[header_to_proto(h) for h in page.sessions],
            next_page_token=_next_token("sessions", page.next_offset))

    async def PushTurn(self, request: session_pb2.PushTurnRequest,
                       context: grpc.aio.ServicerContext) -> session_pb2.PushTurnResponse:
        """Push a turn."""
        result = await self.store.push(owner_of(context), request.session_id, NewTurn(
            role=role_name(request.role), content=request.content,
            token_count=request.token_count, metadata=dict(request.metadata),
            tool_calls=tool_calls_from_proto(request.tool_calls), tool_call_id=request.tool_call_id),
            _expected(request),
            pending_ms=request.pending_ms, commit=request.commit_turn_id, replace=request.replace_turn_id,
            commit_session=request.commit_session, join=request.join_pending_turn_id)
        return session_pb2.PushTurnResponse(turn=turn_to_proto(result.turn), version=result.version,
                                            evicted_turns=result.evicted_turns)

    async def PopTurn(self, request: session_pb2.PopTurnRequest,
                      context: grpc.aio.ServicerContext) -> session_pb2.PopTurnResponse:
        """Pop the top turn."""
        result = await self.store.pop(owner_of(context), request.session_id, _expected(request),
                                      pending=request.pending_turn_id, count=request.count)
        return session_pb2.PopTurnResponse(turn=turn_to_proto(result.turn), version=result.version,
                                           turns=[turn_to_proto(t) for t in result.turns])

    async def PeekTurns(self, request: session_pb2.PeekTurnsRequest,
                        context: grpc.aio.ServicerContext) -> session_pb2.PeekTurnsResponse:
        """The top n turns, top first."""
        page = await self.store.peek(owner_of(context), request.session_id, request.n)
        return session_pb2.PeekTurnsResponse(turns=[turn_to_proto(t) for t in page.turns],
                                             version=page.version)

    async def ListTurns(self, request: session_pb2.ListTurnsRequest,
                        context: grpc.aio.ServicerContext) -> session_pb2.ListTurnsResponse:
        """Turns oldest first, paged."""
        page = await self.store.list_turns(
            owner_of(context), request.session_id, decode_page_token(request.page_token, "turns"),
            page_size(request.page_size, DEFAULT_TURN_PAGE, MAX_TURN_PAGE))
        return session_pb2.ListTurnsResponse(
            turns=[turn_to_proto(t) for t in page.turns], version=page.version,
            next_page_token=_next_token("turns", page.next_offset))

    async def GetTurns(self, request: session_pb2.GetTurnsRequest,
                       context: grpc.aio.ServicerContext) -> session_pb2.GetTurnsResponse:
        """A turn by id and the turns above it (up to count), oldest first."""
        page = await self.store.get_turns(owner_of(context), request.session_id, request.turn_id,
                                          request.count or 1)
        return session_pb2.GetTurnsResponse(turns=[turn_to_proto(t) for t in page.turns],
                                            version=page.version, turn_count=page.turn_count or 0)

    async def GetContext(self, request: session_pb2.GetContextRequest,
                         context: grpc.aio.ServicerContext) -> session_pb2.GetContextResponse:
        """The context window for a token budget."""
        window = await self.store.context(owner_of(context), request.session_id,
                                          request.token_budget)
        return context_to_proto(window)

    async def ForkSession(self, request: session_pb2.ForkSessionRequest,
                          context: grpc.aio.ServicerContext) -> session_pb2.ForkSessionResponse:
        """Fork the bottom turns into a new session."""
        header = await self.store.fork(
            owner_of(context), request.session_id,
            None if request.before_turn_id else request.keep_turns,
            request.before_turn_id, _expected(request), dict(request.metadata), request.new_session_id,
            pending_ms=request.pending_ms)
        return session_pb2.ForkSessionResponse(session=header_to_proto(header))

    async def AnnotateTurn(self, request: session_pb2.AnnotateTurnRequest,
                           context: grpc.aio.ServicerContext) -> session_pb2.AnnotateTurnResponse:
        """Merge metadata into a stored turn."""
        turn = await self.store.annotate(owner_of(context), request.session_id, request.turn_id,
                                         dict(request.metadata))
        return session_pb2.AnnotateTurnResponse(turn=turn_to_proto(turn))

    async def RecordPreference(self, request: session_pb2.RecordPreferenceRequest,
                               context: grpc.aio.ServicerContext) -> session_pb2.RecordPreferenceResponse:
        """Append a preference event about one of the caller's sessions."""
        owner = owner_of(context)
        event = preference_pb2.PreferenceEvent()
        event.CopyFrom(request.event)
        event.owner, event.event_id = owner, ""
        if not event.HasField("create_time"):
            event.create_time.GetCurrentTime()
        kind = _kind_name(event.kind)
        recorded = await self.preferences.record(owner, event.session_id, kind, event.turn_id,
                                                 event.SerializeToString())
        return session_pb2.RecordPreferenceResponse(event_id=recorded.event_id,
                                                    replaced_event_id=recorded.replaced_event_id)

    async def ExportPreferences(self, request: session_pb2.ExportPreferencesRequest,
                                context: grpc.aio.ServicerContext
                                ) -> AsyncIterator[session_pb2.ExportPreferencesResponse]:
        """Stored preference events, oldest first, filtered (an operator's export: the caller's
        identity is required and logged; it does not scope the events, `request.owner` does)."""
        operator = owner_of(context)
        kinds = [_kind_name(k) for k in request.kinds]
        if "" in kinds:
            at = kinds.index("")
            raise InvalidRequest(f"kinds[{at}]: {request.kinds[at]} is not a preference kind")
        since = request.since
        if request.HasField("since") and not (0 <= since.seconds <= MAX_TIMESTAMP_SECONDS
                                              and 0 <= since.nanos < 1_000_000_000):
            raise InvalidRequest("since: not a valid timestamp (1970 to 9999, nanos in [0, 1e9))")
        since_ms = since.ToMilliseconds() if request.HasField("since") else 0
        log.info("preference export by %s (owner %r, kinds %s, after %r)", operator, request.owner or "*",
                 ",".join(kinds) or "*", request.after_event_id)
        async with aclosing(self.preferences.export(
                request.after_event_id, since_ms, request.owner, kinds, request.limit)) as events:
            async for stored in events:
                event = preference_pb2.PreferenceEvent.FromString(stored.payload)
                event.event_id = stored.event_id
                yield session_pb2.ExportPreferencesResponse(event=event)
