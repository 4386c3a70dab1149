"""The session service's objects as the gateway's flows see them: the session service's own
records (`chatstack.session.model`: Turn, SessionHeader, ContextWindow, NewSession, PushResult)
plus what only a client of it needs (pages with their tokens, a push or fork
to make, preference events). Roles by name (`chatstack.core.roles`), times in epoch milliseconds.
The typed clients convert them to and from the wire (`session_codec`, `chatstack.session.wire`);
no flow handles a protobuf message.

`AnswerMeta` is the one codec of what the gateway stores on an assistant turn (the session store
keeps metadata as strings): written once, read back once, defensively.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from chatstack.core.chat_message import ChatMessage, ToolCall
from chatstack.session.model import SessionHeader, Turn

Role = Literal["system", "user", "assistant", "tool"]
Rating = Literal["up", "down", ""]
_N = TypeVar("_N", int, float)
FINISH_PREFIX = "FINISH_REASON_"


#: One message of a conversation (tool calls included): the record every service shares.
Message = ChatMessage


@dataclass(frozen=True)
class AnswerMeta:
    """What the gateway records on an assistant turn: why generation stopped, the tokens of the
    window it was made from, its reward (when scored), its candidates (best-of) and, when the
    safety stage stopped it, where and why (`stage:category:flagged_by`: such an exchange is
    never context again)."""

    finish_reason: str = ""  # stop, length, abort (stored as the API's enum name: FINISH_REASON_STOP)
    prompt_tokens: int | None = None
    reward_score: float | None = None
    best_of: int = 0
    moderation: str = ""
    refusal: str = ""  # the refusal shown (the stored content ends with it)

    def encode(self) -> dict[str, str]:
        """As turn metadata (only what is set)."""
        finish = f"{FINISH_PREFIX}{self.finish_reason.upper()}" if self.finish_reason else None
        fields = {"finish_reason": finish, "prompt_tokens": self.prompt_tokens,
                  "reward_score": self.reward_score,
                  "best_of": self.best_of or None, "moderation": self.moderation or None,
                  "refusal": self.refusal or None}
        return {k: repr(v) if isinstance(v, float) else str(v) for k, v in fields.items() if v is not None}

    @classmethod
    def decode(cls, metadata: Mapping[str, str]) -> AnswerMeta:
        """From turn metadata; a value that does not parse (another writer's) reads as unset."""
        finish = metadata.get("finish_reason", "")
        return cls(finish.removeprefix(FINISH_PREFIX).lower() if finish.startswith(FINISH_PREFIX) else "",
                   _number(metadata.get("prompt_tokens"), int), _number(metadata.get("reward_score"), float),
                   _number(metadata.get("best_of"), int) or 0, metadata.get("moderation", ""),
                   metadata.get("refusal", ""))

    @staticmethod
    def reward(score: float) -> dict[str, str]:
        """The metadata that adds a later score to a stored answer."""
        return AnswerMeta(reward_score=score).encode()


def _number(raw: str | None, kind: type[_N]) -> _N | None:
    try:
        return kind(raw) if raw else None
    except ValueError:
        return None




@dataclass(frozen=True)
class TurnStack:
    """Turns read or removed at one version of a session (peek: top first; pop: top first)."""

    turns: list[Turn]
    version: int


@dataclass(frozen=True)
class TurnsPage:
    """A page of turns, oldest first."""

    turns: list[Turn]
    next_page_token: str
    version: int = 0


@dataclass(frozen=True)
class SessionsPage:
    """A page of an owner's sessions."""

    sessions: list[SessionHeader]
    next_page_token: str




@dataclass(frozen=True)
class TurnPush:
    """A turn to push, and how (see PushTurnRequest): at `expected_version`, pending for
    `pending_ms`, committing the pending turn `commit_turn_id` or replacing the top turn
    `replace_turn_id` with it, or committing a pending session (`commit_session`), or joining a
    pending group (`join_pending_turn_id`)."""

    session_id: str
    role: str
    content: str
    token_count: int
    expected_version: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    pending_ms: int = 0
    commit_turn_id: str = ""
    replace_turn_id: str = ""
    commit_session: bool = False
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    join_pending_turn_id: str = ""  # pending too, joining the pending group whose top this is



@dataclass(frozen=True)
class Fork:
    """A fork of `session_id` keeping the turns below `before_turn_id`."""

    session_id: str
    before_turn_id: str
    new_session_id: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    pending_ms: int = 0


PreferenceKind = Literal["feedback", "best_of", "regenerate", "edit", "undo", "moderated"]


@dataclass(frozen=True)
class PreferenceCandidate:
    """An answer a preference event compares."""

    text: str
    reward: float | None = None
    kept: bool = False
    turn_id: str = ""
    completion_tokens: int = 0
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass
class PreferenceEvent:
    """A preference signal for reward-model training (see `chatstack.gateway.preferences`); the
    recorder fills in the prompt, models and time before it is written."""

    kind: PreferenceKind
    session_id: str
    turn_id: str = ""
    user_turn_id: str = ""
    prompt: list[Message] = field(default_factory=list)
    candidates: list[PreferenceCandidate] = field(default_factory=list)
    rating: str = ""  # a Rating
    preferred_candidate: int | None = None
    reason: str = ""
    original_message: str = ""
    edited_message: str = ""
    fork_session_id: str = ""
    generator_model: str = ""
    reward_model: str = ""
    sampling: dict[str, str] = field(default_factory=dict)
    create_time_ms: int = 0


@dataclass(frozen=True)
class RecordedPreference:
    """A stored preference event, and whether it replaced an earlier one (feedback on the same turn)."""

    event_id: str
    replaced: bool
