"""The oracles: what must hold after every fuzz call, whatever the request was.

Per call: the status is never INTERNAL or UNKNOWN; the call ends before its deadline (a
DEADLINE_EXCEEDED is a hang); responses parse; a call without a valid identity never succeeds;
no response carries another owner's data (their secret marker, a Session of theirs, a Chat
answered in their session); stored session ids are printable and short; stored metadata is
bounded; a failed or foreign mutation leaves the targeted session exactly as it was and a failed
call leaves no new session behind ("no session half-written"). The fuzzer adds the health ones
(tests/fuzz/fuzzer.py): the service still SERVING, and no UNAVAILABLE while every service is
SERVING (a bad input turned into a retryable error, e.g. a downstream INTERNAL the gateway relays).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc
from google.protobuf.message import Message

from chatstack.core.process import wait_until
from chatstack.v1 import common_pb2, session_pb2, session_pb2_grpc
from tests.fuzz.domain import (
    KNOWN,
    OWNER_KEY,
    OWNERS,
    SEED_SESSIONS,
    SPOOFED_OWNERS,
    FuzzCall,
    secret_marker,
)
from tests.fuzz.harness import DEADLINE_SLACK, Outcome, Violation
from tests.fuzz.protobuf_strategies import is_map

FORBIDDEN_CODES = ("INTERNAL", "UNKNOWN")
SESSION_ID_RULE = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no whitespace or controls
METADATA_BOUND_BYTES, METADATA_BOUND_ENTRIES = 64 * 1024, 1024  # far above any sane configured limit
MUTATIONS = {"chat": ("Chat", "Regenerate", "Edit", "Undo", "DeleteSession"),
             "session": ("PushTurn", "PopTurn", "DeleteSession", "ForkSession")}
CREATORS = {"chat": ("Chat", "Edit", "CreateSession"), "session": ("CreateSession", "ForkSession")}
ROLLBACK_WAIT = 3.0  # a rollback may finish just after the client saw the error


# -- per-call checks that need nothing but the call and its outcome --------------------------------
def check_status(call: FuzzCall, outcome: Outcome) -> list[Violation]:
    """Never INTERNAL or UNKNOWN."""
    if outcome.code in FORBIDDEN_CODES:
        return [Violation(f"status {outcome.code}", outcome.details)]
    return []


def check_deadline(call: FuzzCall, outcome: Outcome, deadline: float) -> list[Violation]:
    """Never DEADLINE_EXCEEDED, never longer than the deadline plus slack."""
    if outcome.code == "DEADLINE_EXCEEDED" or outcome.elapsed > deadline + DEADLINE_SLACK:
        return [Violation("hang", f"{outcome.code} after {outcome.elapsed:.1f} s (deadline {deadline:.0f} s)")]
    return []


def check_parse(call: FuzzCall, outcome: Outcome) -> list[Violation]:
    """Every response parses as the RPC's response type."""
    return [Violation("unparseable response", outcome.parse_error)] if outcome.parse_error else []


def walk(message: Message) -> Iterator[Message]:
    """`message` and every message nested in it (map values included)."""
    yield message
    for f, value in message.ListFields():
        if f.type != f.TYPE_MESSAGE:
            continue
        if is_map(f):
            items = list(value.values()) if f.message_type.fields_by_name["value"].type == f.TYPE_MESSAGE else []
        else:
            items = list(value) if f.is_repeated else [value]
        for item in items:
            yield from walk(item)


def nested(outcome: Outcome, full_name: str) -> list[Message]:
    """Every message of type `full_name` in the call's responses."""
    return [m for r in outcome.responses for m in walk(r) if m.DESCRIPTOR.full_name == full_name]


def check_identity(call: FuzzCall, outcome: Outcome, ledger: Ledger) -> list[Violation]:
    """Identity and isolation: rejected without identity, never another owner's data."""
    identity = call.identity
    if identity.owners is None:
        return []
    found = []
    if identity.must_reject and outcome.ok:
        found.append(Violation("accepted without identity", f"{identity.label} succeeded"))
    body = b"".join(outcome.raw_responses)
    for owner in OWNERS:
        if owner not in identity.owners and secret_marker(owner).encode() in body:
            found.append(Violation("leak", f"response to {identity.label} carries {owner}'s turns or prompt"))
    for session in nested(outcome, "chatstack.v1.Session"):
        if session.owner not in identity.owners:  # type: ignore[attr-defined]
            found.append(Violation("leak", f"response to {identity.label} carries a session of {session.owner!r}"))  # type: ignore[attr-defined]
    for info in nested(outcome, "chatstack.v1.ChatSessionInfo"):
        holder = ledger.owner_of(info.session_id)  # type: ignore[attr-defined]
        if not info.created and holder is not None and holder not in identity.owners:  # type: ignore[attr-defined]
            found.append(Violation("leak", f"{identity.label} was answered in {holder}'s session"))
    return found


def check_stored(call: FuzzCall, outcome: Outcome) -> list[Violation]:
    """What a call stored: sessions with well-formed ids, bounded metadata on sessions and turns.

    Only the storing RPCs' own responses are checked, so one bad write is reported where it
    happened, not again by every later listing that shows it."""
    found = []
    stored: list[Message] = []
    if call.rpc.name in CREATORS[call.service]:
        stored += nested(outcome, "chatstack.v1.Session")
        for session in stored:
            sid = session.session_id  # type: ignore[attr-defined]
            if not SESSION_ID_RULE.fullmatch(sid):
                found.append(Violation("malformed session id stored", f"session id {sid[:60]!r} (len {len(sid)})"))
    if call.rpc.name == "PushTurn":
        stored += nested(outcome, "chatstack.v1.Turn")
    for message in stored:
        metadata = message.metadata  # type: ignore[attr-defined]
        size = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
        if size > METADATA_BOUND_BYTES or len(metadata) > METADATA_BOUND_ENTRIES:
            found.append(Violation("unbounded metadata", f"{message.DESCRIPTOR.name} stored with {len(metadata)} "
                                                         f"metadata entries, {size} bytes"))
    return found


# -- sessions: who owns what, seeds, before/after snapshots -----------------------------------
@dataclass
class Ledger:
    """Who owns each session id the fuzz has seen created (the latest creation wins)."""

    owners: dict[str, str] = field(default_factory=dict)

    def created(self, sid: str, owner: str) -> None:
        """Record a creation."""
        self.owners[sid] = owner

    def owner_of(self, sid: str) -> str | None:
        """The owner of a known session id."""
        return self.owners.get(sid)


State = tuple[object, ...] | None  # (turn_count, system_prompt, top turn ids) or None when missing


def wait_for(read: Callable[[], object], want: object, timeout: float = ROLLBACK_WAIT) -> object:
    """Re-read until the value equals `want` or `timeout` passes; returns the last value."""
    with contextlib.suppress(TimeoutError):  # the caller judges the last value
        wait_until(lambda: read() == want, timeout, f"the value {want!r}", interval=0.05)
    return read()


class SessionProbe:
    """Reads and writes sessions straight on the session service, as any owner."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = session_pb2_grpc.SessionServiceStub(self.channel)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    @staticmethod
    def _md(owner: str) -> tuple[tuple[str, str], ...]:
        return ((OWNER_KEY, owner),)

    def state(self, sid: str, owner: str) -> State:
        """What a half-written call would change: turn count, system prompt, the top turn ids."""
        try:
            session = self.stub.GetSession(session_pb2.GetSessionRequest(session_id=sid),
                                           metadata=self._md(owner), timeout=5).session
            top = self.stub.PeekTurns(session_pb2.PeekTurnsRequest(session_id=sid, n=2),
                                      metadata=self._md(owner), timeout=5).turns
        except grpc.RpcError as err:
            return None if err.code() == grpc.StatusCode.NOT_FOUND else ("probe failed", err.code().name)
        return session.turn_count, session.system_prompt, tuple(t.turn_id for t in top)

    def newest(self, owner: str) -> str | None:
        """The owner's most recently created session id."""
        try:
            page = self.stub.ListSessions(session_pb2.ListSessionsRequest(page_size=1),
                                          metadata=self._md(owner), timeout=5)
        except grpc.RpcError as err:
            return f"probe failed: {err.code().name}"
        return page.sessions[0].session_id if page.sessions else None

    def all_sessions(self, owner: str, max_pages: int = 200) -> list[session_pb2.Session]:
        """Every session the owner lists, following page tokens."""
        sessions: list[session_pb2.Session] = []
        token = ""
        for _ in range(max_pages):
            page = self.stub.ListSessions(session_pb2.ListSessionsRequest(page_size=500, page_token=token),
                                          metadata=self._md(owner), timeout=10)
            sessions += page.sessions
            token = page.next_page_token
            if not token:
                break
        return sessions

    def version(self, sid: str, owner: str) -> int | None:
        """The session's version, or None if the owner cannot see it."""
        try:
            return int(self.stub.GetSession(session_pb2.GetSessionRequest(session_id=sid),
                                            metadata=self._md(owner), timeout=5).session.version)
        except grpc.RpcError:
            return None

    def delete(self, sid: str, owner: str) -> None:
        """Delete if it exists."""
        try:
            self.stub.DeleteSession(session_pb2.DeleteSessionRequest(session_id=sid), metadata=self._md(owner), timeout=5)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise

    def seed(self, sid: str, owner: str, exchanges: int = 2) -> tuple[int, list[str]]:
        """A session with the owner's secret in its system prompt and every turn; (version, turn ids)."""
        marker, md = secret_marker(owner), self._md(owner)
        self.stub.CreateSession(session_pb2.CreateSessionRequest(
            session_id=sid, system_prompt=f"be terse {marker}", system_prompt_tokens=8), metadata=md, timeout=5)
        turn_ids, version = [], 0
        for i in range(exchanges):
            for role, text in ((common_pb2.ROLE_USER, "ka to ri"), (common_pb2.ROLE_ASSISTANT, "sa mo lu")):
                pushed = self.stub.PushTurn(session_pb2.PushTurnRequest(
                    session_id=sid, role=role, content=f"{text} {marker} {i}", token_count=9), metadata=md, timeout=5)
                turn_ids.append(pushed.turn.turn_id)
                version = pushed.version
        return version, turn_ids


@dataclass
class Watch:
    """Snapshots taken before a call, to compare after it."""

    sid: str = ""
    holder: str | None = None
    before: State = None
    newest: dict[str, str | None] = field(default_factory=dict)


class Sessions:
    """The session-side oracles: seeds, the ledger, snapshots around mutations, listing sweeps."""

    def __init__(self, probe: SessionProbe) -> None:
        self.probe = probe
        self.ledger = Ledger()
        self.seed_versions: dict[str, int] = {}
        self.seed_turns: dict[str, list[str]] = {}

    def reset_seeds(self) -> None:
        """Put back every seeded session the last call changed (same ids, fresh turns)."""
        for owner, sids in SEED_SESSIONS.items():
            for sid in sids:
                if sid not in self.seed_versions or self.probe.version(sid, owner) != self.seed_versions[sid]:
                    self._reseed(sid, owner)
        KNOWN.turns = [t for turns in self.seed_turns.values() for t in turns]

    def _reseed(self, sid: str, owner: str) -> None:
        holder = self.ledger.owner_of(sid)
        if holder is not None and holder != owner:
            self.probe.delete(sid, holder)
        self.probe.delete(sid, owner)
        self.seed_versions[sid], self.seed_turns[sid] = self.probe.seed(sid, owner)
        self.ledger.created(sid, owner)

    def watch(self, call: FuzzCall) -> Watch:
        """Snapshot the session a mutation targets, and the caller's newest session."""
        request = call.request()
        watch = Watch()
        if call.rpc.name in MUTATIONS[call.service] and request is not None:
            watch.sid = getattr(request, "session_id", "")
            watch.holder = self.ledger.owner_of(watch.sid)
            if watch.holder is not None:
                watch.before = self.probe.state(watch.sid, watch.holder)
        if call.rpc.name in CREATORS[call.service] and call.identity.owners:
            watch.newest = {owner: self.probe.newest(owner) for owner in call.identity.owners}
        return watch

    def verify(self, call: FuzzCall, outcome: Outcome, watch: Watch) -> list[Violation]:
        """Failed or foreign mutations changed nothing; failed creations left no session."""
        found = []
        identity = call.identity
        if watch.holder is not None and watch.before is not None:
            foreign = identity.must_reject or identity.owners is None or watch.holder not in identity.owners
            if not outcome.ok or foreign:
                after = wait_for(lambda: self.probe.state(watch.sid, watch.holder or ""), watch.before)
                if after != watch.before:
                    oracle = "foreign write" if foreign else "half-written session"
                    found.append(Violation(oracle, f"{outcome.code} {call.rpc.name} by {identity.label} changed "
                                                   f"{watch.holder}'s session: {watch.before} -> {after}"))
            elif call.rpc.name == "Chat":
                after = self.probe.state(watch.sid, watch.holder)
                if after is not None and after[0] != watch.before[0] + 2:  # type: ignore[operator]
                    found.append(Violation("half-written session",
                                           f"an OK Chat took the turn count {watch.before[0]} -> {after[0]}"))
        if not outcome.ok:
            for owner, newest in watch.newest.items():
                after_newest = wait_for(lambda o=owner: self.probe.newest(o), newest)  # type: ignore[misc]
                # Only a session nobody created before is one this call left behind; a known one
                # (or none) on top means the newest one left meanwhile (a rollback finishing, a
                # delete), which is not a half-written call.
                if after_newest != newest and isinstance(after_newest, str) \
                        and self.ledger.owner_of(after_newest) is None:
                    found.append(Violation("half-written session", f"failed {call.rpc.name} ({outcome.code}) left "
                                                                   f"session {after_newest!r} for {owner}"))
        return found

    def learn(self, call: FuzzCall, outcome: Outcome) -> None:
        """Add sessions the call created to the ledger (owners as the service reports them)."""
        if not outcome.ok:
            return
        for message in (m for r in outcome.responses for m in walk(r)):
            name = message.DESCRIPTOR.full_name
            if name == "chatstack.v1.Session" and call.rpc.name in CREATORS[call.service]:
                self._created(message.session_id, message.owner)  # type: ignore[attr-defined]
            elif name == "chatstack.v1.ChatSessionInfo" and message.created:  # type: ignore[attr-defined]
                self._created(message.session_id, self._find_owner(message.session_id, call))  # type: ignore[attr-defined]

    def _created(self, sid: str, owner: str | None) -> None:
        if owner is not None:
            self.ledger.created(sid, owner)
            KNOWN.remember_session(sid)

    def _find_owner(self, sid: str, call: FuzzCall) -> str | None:
        for owner in sorted(call.identity.owners or ()):
            if self.probe.version(sid, owner) is not None:
                return owner
        return None

    def sweep(self) -> list[Violation]:
        """List every session of every owner the fuzz used: all theirs, none known as another's."""
        found = []
        for owner in (*OWNERS, *SPOOFED_OWNERS):
            for session in self.probe.all_sessions(owner):
                holder = self.ledger.owner_of(session.session_id)
                if session.owner != owner or (holder is not None and holder != owner):
                    found.append(Violation("leak", f"{owner!r} lists session {session.session_id!r} "
                                                   f"(owner {session.owner!r}, created by {holder!r})"))
        return found
