"""Domain objects of the gateway's chat flow (events the servicer turns into ChatResponses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# How a single answer's reward was handled (ChatFinal.reward_status).
RewardStatus = Literal["scored", "pending", "off"]


@dataclass(frozen=True)
class ChatOptions:
    """Per-call generation options (0 / None = gateway default)."""

    max_tokens: int = 0
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    best_of: int = 1
    context_token_budget: int = 0
    echo_prompt: bool = False
    n: int = 1  # answers returned (stateless completions)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = None  # top log-probabilities per token (None: none)
    truncate: bool = True  # False: a conversation that does not fit is refused, not cut


@dataclass(frozen=True)
class SessionEvent:
    """First event: where the answer goes and what the model sees."""

    session_id: str
    created: bool
    user_turn_id: str
    context_turns: int
    context_truncated: bool
    prompt_tokens: int
    prompt: str = ""


@dataclass(frozen=True)
class DeltaEvent:
    """Answer text as it is generated."""

    text: str
    token_ids: list[int]


@dataclass(frozen=True)
class Candidate:
    """A best-of-n candidate with its reward."""

    index: int
    reward_score: float
    text: str
    completion_tokens: int
    chosen: bool


@dataclass(frozen=True)
class FinalEvent:
    """Last event: the stored answer and how the call went."""

    assistant_turn_id: str
    text: str
    reward_score: float
    candidates: list[Candidate]
    prompt_tokens: int
    completion_tokens: int
    timings: dict[str, float]
    finish_reason: int
    session_version: int
    reward_status: RewardStatus = "scored"  # "pending": scored after it was stored


ChatEvent = SessionEvent | DeltaEvent | FinalEvent


@dataclass
class Answer:
    """What the generate+reward stage produced."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    reward_score: float = 0.0
    candidates: list[Candidate] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: int = 0
    reward_status: RewardStatus = "scored"
