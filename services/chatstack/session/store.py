"""RedisSessionStore: the session stack in Redis, one Lua script per operation.

Every mutation is one atomic round trip (EVALSHA of a script) and increments the session's
version; `expected_version` mismatches change nothing. PushTurn and PopTurn are O(1); GetContext
costs O(log n) plus the turns it returns (token prefix sums live in a sorted set). The store knows
nothing of gRPC: it raises the domain errors of `chatstack.core.errors`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chatstack.core.chat_message import ToolCall
from chatstack.core.errors import (
    AlreadyExists,
    BackendUnavailable,
    FailedPrecondition,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    VersionConflict,
)
from chatstack.core.identifiers import check_id
from chatstack.core.request_context import bounded_timeout, current_request_id
from chatstack.core.roles import ASSISTANT, TOOL, TURN_ROLES
from chatstack.session.config import SessionConfig
from chatstack.session.metrics import SessionMetrics
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

T = TypeVar("T")
log = logging.getLogger(__name__)
SCRIPTS = ("create", "get", "delete", "push", "pop", "peek", "list_turns", "get_turns", "context",
           "fork", "list_sessions", "annotate", "record_preference")
#: Most turns one GetTurns reads (a turn and the few after it: an exchange, its successor).
MAX_GET_TURNS = 16
#: Longest tool call id or function name a turn may hold (OpenAI ids are ~30 characters).
MAX_TOOL_ID_CHARS = 128


def _load_script(name: str) -> str:
    lua = resources.files("chatstack.session") / "lua"
    return (lua / "_common.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _now_ms() -> int:
    return int(time.time() * 1000)


class RedisSessionStore:
    """Sessions as stacks of turns in Redis (see module docstring)."""

    def __init__(self, config: SessionConfig, metrics: SessionMetrics,
                 client: aioredis.Redis | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.redis = client or aioredis.Redis.from_url(
            config.redis_url,
            max_connections=config.pool_size,
            socket_timeout=config.redis_timeout_seconds,
            socket_connect_timeout=config.redis_connect_timeout_seconds,
            # One quick retry replaces a connection that died while Redis restarted. Every
            # mutation is idempotent under a retry (push by turn id, pop by op id).
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1),
            retry_on_error=[RedisConnectionError],
            health_check_interval=5,
        )
        self.scripts = {name: self.redis.register_script(_load_script(name)) for name in SCRIPTS}
        self.prefix = config.key_prefix

    # -- keys -----------------------------------------------------------------------------
    def _keys(self, sid: str) -> list[str]:
        base = f"{self.prefix}{{{sid}}}"
        return [f"{base}:h", f"{base}:turns", f"{base}:z", f"{base}:ids"]

    def _owner_index(self, owner: str) -> str:
        return f"{self.prefix}owner:{owner}"

    def header_key(self, sid: str) -> str:
        """The session's header hash (owner, version, ...)."""
        return self._keys(sid)[0]

    @property
    def preference_stream(self) -> str:
        """The deployment's preference stream (see `chatstack.session.preference_store`)."""
        return f"{self.prefix}preferences"

    def preference_keys(self, sid: str) -> list[str]:
        """A session's preference index keys: its events' stream ids (a set) and its feedback
        event per turn (a hash); the session's delete removes both and the events."""
        base = f"{self.prefix}{{{sid}}}"
        return [f"{base}:pref-events", f"{base}:pref-feedback"]

    # -- plumbing -------------------------------------------------------------------------
    async def run(self, op: str, keys: list[str], args: list[Any]) -> Any:
        """Run script `op` (see `_run`); for the preference store, which shares the scripts."""
        return await self._run(op, keys, args)

    async def call(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis command (see `_call`)."""
        return await self._call(op, fn)

    async def _run(self, op: str, keys: list[str], args: list[Any]) -> Any:
        """Run script `op` within the Redis timeout cut to the RPC deadline; map errors."""
        return await self._call(op, lambda: self.scripts[op](keys=keys, args=args))

    async def _call(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        timeout = bounded_timeout(self.config.redis_timeout_seconds)
        start = time.perf_counter()
        try:
            return await asyncio.wait_for(fn(), timeout)
        except ResponseError as exc:
            raise _domain_error(str(exc)) from exc
        except (TimeoutError, RedisTimeoutError) as exc:
            raise BackendUnavailable(f"redis did not answer within {timeout:.2f}s") from exc
        except (RedisConnectionError, OSError) as exc:
            log.warning("redis is unreachable: %s", exc)
            raise BackendUnavailable("the session store is unreachable; retry") from exc
        finally:
            self.metrics.redis_duration.labels(op).observe(time.perf_counter() - start)

    async def ping(self) -> None:
        """Round trip to Redis (readiness)."""
        await self._call("ping", self.redis.ping)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.redis.aclose()

    # -- validation -----------------------------------------------------------------------
    def _check_session_id(self, sid: str) -> None:
        check_id(sid, "session_id")

    def _check_metadata(self, metadata: dict[str, str], field: str) -> None:
        """Entries, key length and total size within the configured limits."""
        c = self.config
        if len(metadata) > c.max_metadata_entries:
            raise InvalidRequest(f"{field}: {len(metadata)} entries exceed the limit of "
                                 f"{c.max_metadata_entries}")
        total = 0
        for key, value in metadata.items():
            key_bytes = len(key.encode())
            if not key or key_bytes > c.max_metadata_key_bytes:
                raise InvalidRequest(f"{field}: key {key[:40]!r} must be 1-{c.max_metadata_key_bytes} bytes")
            total += key_bytes + len(value.encode())
        if total > c.max_metadata_bytes:
            raise InvalidRequest(f"{field}: {total} bytes exceed the limit of {c.max_metadata_bytes}")

    def _check_turn(self, turn: NewTurn) -> None:
        if turn.role not in TURN_ROLES:
            raise InvalidRequest(
                f"role: {turn.role or 'unspecified'} is not a turn role (user, assistant or tool; "
                "the system prompt belongs to the session)"
            )
        if turn.tool_calls and turn.role != ASSISTANT:
            raise InvalidRequest("tool_calls: only an assistant turn calls tools")
        if (turn.role == TOOL) != bool(turn.tool_call_id):
            raise InvalidRequest("tool_call_id: required on a tool turn, and only there")
        if not turn.content and not turn.tool_calls:
            raise InvalidRequest("content: empty")
        size = len(turn.content.encode()) + sum(len(c.arguments.encode()) for c in turn.tool_calls)
        if size > self.config.max_content_bytes:
            raise InvalidRequest(
                f"content: {size} bytes exceed the limit of {self.config.max_content_bytes}"
            )
        if turn.token_count < 0:
            raise InvalidRequest("token_count: must be >= 0")
        for field, value in [("tool_call_id", turn.tool_call_id),
                             *((f"tool_calls[{i}].id", c.id) for i, c in enumerate(turn.tool_calls))]:
            if len(value) > MAX_TOOL_ID_CHARS:
                raise InvalidRequest(f"{field}: longer than {MAX_TOOL_ID_CHARS} characters")
        for i, call in enumerate(turn.tool_calls):
            if not call.id or not call.name or len(call.name) > MAX_TOOL_ID_CHARS:
                raise InvalidRequest(f"tool_calls[{i}]: needs an id and a name of at most "
                                     f"{MAX_TOOL_ID_CHARS} characters")
        self._check_metadata(turn.metadata, "metadata")

    # -- operations -----------------------------------------------------------------------
    async def create(self, owner: str, new: NewSession) -> SessionHeader:
        """Create a session (ALREADY_EXISTS if a given id is taken)."""
        sid = new.session_id or uuid.uuid4().hex
        self._check_session_id(sid)
        if len(new.system_prompt.encode()) > self.config.max_system_prompt_bytes:
            raise InvalidRequest(
                f"system_prompt: exceeds the limit of {self.config.max_system_prompt_bytes} bytes"
            )
        self._check_metadata(new.metadata, "metadata")
        ttl = new.ttl_seconds or self.config.default_ttl_seconds
        if ttl > self.config.max_ttl_seconds:
            raise InvalidRequest(f"ttl_seconds: {ttl} exceeds the limit of {self.config.max_ttl_seconds}")
        raw = await self._run("create", [self._keys(sid)[0], self._owner_index(owner)], [
            owner, sid, _now_ms(), ttl, new.system_prompt, new.system_prompt_tokens,
            json.dumps(new.metadata), self.config.max_ttl_seconds, self._pending_ms(new.pending_ms),
        ])
        self.metrics.sessions_created.inc()
        return _header(sid, raw)

    async def get(self, owner: str, sid: str) -> SessionHeader:
        """A session's header (NOT_FOUND if missing or another owner's)."""
        self._check_session_id(sid)
        return _header(sid, await self._run("get", self._keys(sid), [owner]))

    async def delete(self, owner: str, sid: str, expected_version: int | None = None) -> None:
        """Delete a session, its turns and its preference events."""
        self._check_session_id(sid)
        await self._run("delete", [*self._keys(sid), self._owner_index(owner), *self.preference_keys(sid),
                                   self.preference_stream], [owner, _ver(expected_version), sid])
        self.metrics.sessions_deleted.inc()

    def _pending_ms(self, pending_ms: int) -> int:
        if pending_ms > self.config.max_pending_ms:
            raise InvalidRequest(f"pending_ms: {pending_ms} exceeds the limit of "
                                 f"{self.config.max_pending_ms}")
        return pending_ms

    async def push(self, owner: str, sid: str, turn: NewTurn, expected_version: int | None = None,
                   pending_ms: int = 0, commit: str = "", replace: str = "",
                   commit_session: bool = False, join: str = "") -> PushResult:
        """Push a turn on top (O(1)); pending for `pending_ms` if > 0 (joining the pending group
        whose top is `join`), committing the pending turns topped by `commit` with it, or
        replacing the top turn `replace`; `commit_session` makes a pending session a session like
        any other (see PushTurnRequest)."""
        self._check_session_id(sid)
        self._check_turn(turn)
        if commit:
            check_id(commit, "commit_turn_id")
        if replace:
            check_id(replace, "replace_turn_id")
        if join:
            check_id(join, "join_pending_turn_id")
            if not pending_ms or commit or replace:
                raise InvalidRequest("join_pending_turn_id: a pending push (pending_ms) that neither "
                                     "commits nor replaces")
        turn_id = uuid.uuid4().hex[:16]
        now = _now_ms()
        fields = {"id": turn_id, "r": turn.role, "c": turn.content, "t": turn.token_count, "ts": now,
                  "m": turn.metadata}
        if turn.tool_calls:
            fields["tc"] = [[c.id, c.name, c.arguments] for c in turn.tool_calls]
        if turn.tool_call_id:
            fields["ti"] = turn.tool_call_id
        body = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
        policy = "evict" if self.config.max_turns_policy == "evict_oldest" else "reject"
        version, position, evicted = await self._run("push", self._keys(sid), [
            owner, _ver(expected_version), now, body[1:], turn.token_count, turn_id,
            self.config.max_turns, policy, self._pending_ms(pending_ms), commit, replace,
            "1" if commit_session else "", join,
        ])
        self.metrics.turns_pushed.inc()
        self.metrics.turns_evicted.inc(int(evicted))
        stored = Turn(turn_id, turn.role, turn.content, turn.token_count, now,
                      dict(turn.metadata), int(position), turn.tool_calls, turn.tool_call_id)
        return PushResult(stored, int(version), int(evicted))

    async def pop(self, owner: str, sid: str, expected_version: int | None = None,
                  pending: str = "", count: int = 1) -> PopResult:
        """Pop the top `count` turns at once (O(count)), or the pending turn `pending`;
        FAILED_PRECONDITION on a stack with fewer turns."""
        self._check_session_id(sid)
        if pending:
            check_id(pending, "pending_turn_id")
        count = max(1, count)
        if count > self.config.max_pop_turns:
            raise InvalidRequest(f"count: {count} exceeds the limit of {self.config.max_pop_turns}")
        op_id = f"{current_request_id()}:{uuid.uuid4().hex[:8]}"
        version, position, *raws = await self._run(
            "pop", self._keys(sid), [owner, _ver(expected_version), _now_ms(), op_id, pending, count])
        self.metrics.turns_popped.inc(len(raws))
        lowest = int(position)
        turns = [_turn(raw, 0, lowest + len(raws) - 1 - i) for i, raw in enumerate(raws)]
        return PopResult(turns[0], int(version), turns)

    async def peek(self, owner: str, sid: str, n: int) -> TurnPage:
        """The top n turns, top first."""
        self._check_session_id(sid)
        if n <= 0:
            raise InvalidRequest("n: must be >= 1")
        version, base, *raws = await self._run("peek", self._keys(sid), [owner, n])
        turns = [_turn(r, int(base)) for r in raws]
        return TurnPage(list(reversed(turns)), int(version))

    async def list_turns(self, owner: str, sid: str, offset: int, limit: int) -> TurnPage:
        """Turns from `offset` (0 = bottom), oldest first."""
        self._check_session_id(sid)
        version, base, count, *raws = await self._run(
            "list_turns", self._keys(sid), [owner, offset, limit])
        turns = [_turn(r, int(base)) for r in raws]
        end = offset + len(turns)
        return TurnPage(turns, int(version), end if end < int(count) else None)

    async def get_turns(self, owner: str, sid: str, turn_id: str, count: int = 1) -> TurnPage:
        """The turn `turn_id` and up to `count` - 1 turns above it, oldest first; the cost does not
        grow with the history (one hash lookup, one range)."""
        self._check_session_id(sid)
        check_id(turn_id, "turn_id")
        if not 1 <= count <= MAX_GET_TURNS:
            raise InvalidRequest(f"count: must be 1..{MAX_GET_TURNS}, got {count}")
        version, base, turn_count, *raws = await self._run("get_turns", self._keys(sid),
                                                           [owner, turn_id, count])
        return TurnPage([_turn(r, int(base)) for r in raws], int(version), turn_count=int(turn_count))

    async def context(self, owner: str, sid: str, token_budget: int) -> ContextWindow:
        """The system prompt plus the longest run of newest whole turns within the budget."""
        self._check_session_id(sid)
        if token_budget <= 0:
            raise InvalidRequest(f"token_budget: must be > 0, got {token_budget}")
        version, base, count, sys, sys_tokens, *raws = await self._run(
            "context", self._keys(sid), [owner, token_budget])
        turns = [_turn(r, int(base)) for r in raws]
        sys_t = int(sys_tokens)
        return ContextWindow(
            system_prompt=_s(sys), system_prompt_tokens=sys_t, turns=turns,
            total_tokens=sys_t + sum(t.token_count for t in turns),
            omitted_turns=int(count) - len(turns), version=int(version),
        )

    async def fork(self, owner: str, sid: str, keep_turns: int | None,
                   before_turn_id: str = "", expected_version: int | None = None,
                   metadata: dict[str, str] | None = None, new_session_id: str = "",
                   pending_ms: int = 0) -> SessionHeader:
        """A new session with the bottom `keep_turns` turns (or those below `before_turn_id`)."""
        self._check_session_id(sid)
        if keep_turns is None and not before_turn_id:
            raise InvalidRequest("keep_turns or before_turn_id: give one")
        if before_turn_id:
            check_id(before_turn_id, "before_turn_id")
        self._check_metadata(metadata or {}, "metadata")
        new_sid = check_id(new_session_id, "new_session_id") if new_session_id else uuid.uuid4().hex
        src, new = self._keys(sid), self._keys(new_sid)
        raw = await self._run("fork", [src[0], src[1], src[3], *new, self._owner_index(owner)], [
            owner, _ver(expected_version), -1 if keep_turns is None else keep_turns,
            before_turn_id, new_sid, _now_ms(), json.dumps(metadata or {}),
            self.config.max_ttl_seconds, self._pending_ms(pending_ms),
        ])
        self.metrics.sessions_created.inc()
        return _header(new_sid, raw)

    async def annotate(self, owner: str, sid: str, turn_id: str, metadata: dict[str, str]) -> Turn:
        """Merge `metadata` into a stored turn's labels; the version does not change."""
        self._check_session_id(sid)
        check_id(turn_id, "turn_id")
        if not metadata:
            raise InvalidRequest("metadata: empty")
        self._check_metadata(metadata, "metadata")
        c = self.config
        base, raw = await self._run("annotate", self._keys(sid), [
            owner, turn_id, json.dumps(metadata), c.max_metadata_entries, c.max_metadata_bytes])
        return _turn(raw, int(base))

    async def list_sessions(self, owner: str, offset: int, limit: int) -> SessionPage:
        """The owner's sessions, newest first."""
        has_more, next_offset, *rows = await self._run(
            "list_sessions", [self._owner_index(owner)], [owner, self.prefix, offset, limit])
        sessions = []
        for row in rows:
            fields = _pairs(row)
            sessions.append(_header(fields.pop("sid"), row))
        return SessionPage(sessions, int(next_offset) if int(has_more) else None)


# -- decoding -----------------------------------------------------------------------------
def _ver(expected: int | None) -> str:
    return "" if expected is None else str(expected)


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {_s(flat[i]): _s(flat[i + 1]) for i in range(0, len(flat), 2)}


def _header(sid: str, flat: list[Any]) -> SessionHeader:
    """A header from its hash; pending turns (see push.lua) are not counted."""
    f = _pairs(flat)
    pending = int(f.get("pending_count") or 1) if f.get("pending") else 0
    pending_tokens = int(f.get("pending_tokens") or 0) if pending else 0
    return SessionHeader(
        session_id=sid, owner=f["owner"], create_time_ms=int(f["created_ms"]),
        update_time_ms=int(f["updated_ms"]), ttl_seconds=int(f["ttl"]),
        metadata=json.loads(f.get("meta") or "{}"), system_prompt=f.get("sys", ""),
        system_prompt_tokens=int(f.get("sys_tokens") or 0), version=int(f["version"]),
        turn_count=int(f["next"]) - int(f["base"]) - pending,
        total_tokens=int(f["tok_end"]) - int(f["tok_base"]) - pending_tokens,
    )


def _turn(raw: Any, base: int, position: int | None = None) -> Turn:
    d = json.loads(_s(raw))
    return Turn(turn_id=d["id"], role=d["r"], content=d["c"], token_count=int(d["t"]),
                create_time_ms=int(d["ts"]), metadata=dict(d.get("m") or {}),
                position=int(d["a"]) - base if position is None else position,
                tool_calls=tuple(ToolCall(*c) for c in d.get("tc") or ()), tool_call_id=d.get("ti", ""))


_ERRORS: dict[str, Callable[[str], Exception]] = {
    "NOTFOUND": lambda rest: NotFound("session not found"),
    "NOTURN": lambda rest: NotFound("turn not found in the session"),
    "VERSION": lambda rest: VersionConflict(f"version conflict: the session is at version {rest}"),
    "EMPTY": lambda rest: FailedPrecondition("the session's turn stack is empty"),
    "SHORT": lambda rest: FailedPrecondition(f"count: the session holds only {rest} turns"),
    "BUSY": lambda rest: VersionConflict(
        "a turn of the session is being answered; retry when its answer is stored"),
    "LAPSED": lambda rest: VersionConflict(
        "commit_turn_id: the pending turn is gone (its lease ran out, or it was removed); answer again"),
    "GONE": lambda rest: NotFound("pending turn not found: it was committed, removed, or its lease ran out"),
    "FULL": lambda rest: LimitExceeded(f"the session holds {rest} turns, the maximum"),
    "EXISTS": lambda rest: AlreadyExists("session_id: already exists"),
    "RANGE": lambda rest: InvalidRequest(f"keep_turns: exceeds the session's {rest} turns"),
    "METADATA": lambda rest: InvalidRequest(
        "metadata: the turn's merged metadata ({} entries, {} bytes) exceeds the limits".format(
            *rest.split())),
}


def _domain_error(message: str) -> Exception:
    """Map a Lua error reply (`CODE rest`) to a domain error. Any other reply (Redis busy,
    loading, out of memory, read-only replica, a script failure) is logged in full and answered
    UNAVAILABLE without Redis's text: no script names, SHAs or key names reach a client."""
    code, _, rest = message.partition(" ")
    factory = _ERRORS.get(code)
    if factory is None:
        log.warning("redis error: %s", message)
        return BackendUnavailable(f"the session store could not complete the operation; retry "
                                  f"(request id {current_request_id()})")
    return factory(rest)
