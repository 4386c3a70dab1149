"""Domain objects of the session service (no gRPC, no Redis)."""

from __future__ import annotations

from dataclasses import dataclass, field

from chatstack.core.chat_message import ToolCall


@dataclass(frozen=True)
class SessionHeader:
    """A session without its turns."""

    session_id: str
    owner: str
    create_time_ms: int
    update_time_ms: int
    ttl_seconds: int
    metadata: dict[str, str]
    system_prompt: str
    system_prompt_tokens: int
    version: int
    turn_count: int
    total_tokens: int


@dataclass(frozen=True)
class Turn:
    """One turn on a session's stack; position counts from the bottom (0)."""

    turn_id: str
    role: str
    content: str
    token_count: int
    create_time_ms: int
    metadata: dict[str, str] = field(default_factory=dict)
    position: int = 0
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant turn's calls
    tool_call_id: str = ""  # the call a tool turn answers


@dataclass(frozen=True)
class NewTurn:
    """What a caller pushes."""

    role: str
    content: str
    token_count: int
    metadata: dict[str, str] = field(default_factory=dict)
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""


@dataclass(frozen=True)
class PushResult:
    """The stored turn, the new version and how many old turns were evicted."""

    turn: Turn
    version: int
    evicted_turns: int


@dataclass(frozen=True)
class PopResult:
    """The removed turn and the new version."""

    turn: Turn
    version: int
    turns: list[Turn] = field(default_factory=list)  # every removed turn, top first


@dataclass(frozen=True)
class TurnPage:
    """Turns plus the version they were read at, the offset of the next page (None = end), and
    (where the read says) how many turns the session holds."""

    turns: list[Turn]
    version: int
    next_offset: int | None = None
    turn_count: int | None = None


@dataclass(frozen=True)
class ContextWindow:
    """The system prompt plus the newest whole turns that fit a token budget."""

    system_prompt: str
    system_prompt_tokens: int
    turns: list[Turn]
    total_tokens: int
    omitted_turns: int
    version: int

    @property
    def truncated(self) -> bool:
        """True when older turns were left out."""
        return self.omitted_turns > 0


@dataclass(frozen=True)
class SessionPage:
    """A page of sessions and the offset of the next page (None = end)."""

    sessions: list[SessionHeader]
    next_offset: int | None


@dataclass(frozen=True)
class NewSession:
    """What a caller creates."""

    session_id: str = ""
    system_prompt: str = ""
    system_prompt_tokens: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    ttl_seconds: int = 0
    pending_ms: int = 0  # > 0: unlisted, and gone after this long unless an exchange commits into it
