"""Domain records of the safety service (no transport)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from chatstack.core.chat_message import ChatMessage
from chatstack.safety.rules import RuleHit

FlaggedBy = Literal["", "rules", "model"]
#: The roles whose turns a conversation's input check reads (a tool's result can carry an
#: injected instruction as well as a user can).
JUDGED_ROLES = ("user", "tool")


@dataclass(frozen=True)
class CheckItem:
    """One thing to judge: a conversation's input (its user and tool turns read together, oldest
    first) or a text as it is (a window of an answer, a standalone text)."""

    conversation: tuple[ChatMessage, ...] | None = None
    text: str | None = None

    def judged_text(self) -> str:
        """What the guard reads: the text, or the conversation's judged turns joined by newlines."""
        if self.text is not None:
            return self.text
        return "\n".join(m.content for m in self.conversation or () if m.role in JUDGED_ROLES)


@dataclass(frozen=True)
class Policy:
    """What flags an item: the categories judged (empty: all) and per-category thresholds on the
    guard model's probability (missing: the service's defaults)."""

    categories: frozenset[str] = frozenset()
    thresholds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Judgement:
    """The verdict on one item: flagged or not, by which category and whom, the guard's
    probability of every judged category, every rule of a judged category that matched, and the
    tokens the guard read."""

    flagged: bool
    category: str
    flagged_by: FlaggedBy
    scores: dict[str, float]
    rules: list[RuleHit]
    input_tokens: int


@dataclass(frozen=True)
class SafetyModelInfo:
    """What GetModelInfo reports."""

    model: str
    max_model_len: int
    max_items: int
    categories: tuple[str, ...]
    thresholds: dict[str, float]
    version: str = ""
