"""A pure-Python reference of the session stack, for the model-based (stateful) test."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RefTurn:
    """A turn as the reference stores it."""

    role: str
    content: str
    token_count: int


@dataclass
class RefSession:
    """A session: system prompt, stack of turns, version."""

    system_tokens: int
    turns: list[RefTurn] = field(default_factory=list)
    version: int = 1


class ReferenceSessions:
    """The obvious implementation: lists in a dict. Errors are returned as status names."""

    def __init__(self) -> None:
        self.sessions: dict[str, RefSession] = {}

    def create(self, sid: str, system_tokens: int) -> None:
        self.sessions[sid] = RefSession(system_tokens)

    def push(self, sid: str, turn: RefTurn, expected: int | None) -> tuple[str, int | None]:
        s = self.sessions.get(sid)
        if s is None:
            return "NOT_FOUND", None
        if expected is not None and expected != s.version:
            return "ABORTED", None
        s.turns.append(turn)
        s.version += 1
        return "OK", len(s.turns) - 1

    def pop(self, sid: str) -> tuple[str, RefTurn | None]:
        s = self.sessions.get(sid)
        if s is None:
            return "NOT_FOUND", None
        if not s.turns:
            return "FAILED_PRECONDITION", None
        s.version += 1
        return "OK", s.turns.pop()

    def peek(self, sid: str, n: int) -> tuple[str, list[RefTurn]]:
        s = self.sessions.get(sid)
        if s is None:
            return "NOT_FOUND", []
        return "OK", list(reversed(s.turns[-n:]))

    def context(self, sid: str, budget: int) -> tuple[str, list[RefTurn], int]:
        """Newest whole turns whose token counts fit budget - system tokens."""
        s = self.sessions.get(sid)
        if s is None:
            return "NOT_FOUND", [], 0
        avail = budget - s.system_tokens
        chosen: list[RefTurn] = []
        used = 0
        for turn in reversed(s.turns):
            if used + turn.token_count > avail:
                break
            chosen.append(turn)
            used += turn.token_count
        return "OK", list(reversed(chosen)), len(s.turns) - len(chosen)

    def fork(self, sid: str, new_sid: str, keep: int) -> str:
        s = self.sessions.get(sid)
        if s is None:
            return "NOT_FOUND"
        if keep > len(s.turns):
            return "INVALID_ARGUMENT"
        self.sessions[new_sid] = RefSession(s.system_tokens, list(s.turns[:keep]))
        return "OK"

    def delete(self, sid: str) -> str:
        return "OK" if self.sessions.pop(sid, None) is not None else "NOT_FOUND"
