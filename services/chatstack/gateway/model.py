"""Domain objects of the gateway's chat flow (events the servicer turns into ChatResponses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from chatstack.core.chat_message import ToolCall
from chatstack.core.structured_output import Constraint
from chatstack.gateway.tool_parsers import CallDelta
from chatstack.gateway.tool_use import ToolUse

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
    constraint: Constraint | None = None  # structured output
    tools: ToolUse | None = None  # functions the model may call


@dataclass(frozen=True)
class ModelInfo:
    """A served model's name, version and context length."""

    name: str
    version: str = ""
    max_model_len: int = 0

    @property
    def named(self) -> str:
        """`name@version` (the name alone without a version)."""
        return f"{self.name}@{self.version}" if self.version else self.name


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
class TokenLogprob:
    """A token and its log-probability."""

    token: str
    logprob: float


@dataclass(frozen=True)
class PositionLogprobs:
    """At one position of an answer: the sampled token and the most likely alternatives."""

    sampled: TokenLogprob
    top: list[TokenLogprob]


@dataclass(frozen=True)
class DeltaEvent:
    """Answer text as it is generated (of the returned answer `index`)."""

    text: str
    token_ids: list[int]
    index: int = 0
    logprobs: list[PositionLogprobs] = field(default_factory=list)
    tool_calls: list[CallDelta] = field(default_factory=list)  # `text` is then what is not a call

    @property
    def tokens(self) -> int:
        """How many tokens the delta is (what the output monitor counts)."""
        return len(self.token_ids)


ModerationStage = Literal["input", "output"]


@dataclass(frozen=True)
class Moderation:
    """Why the safety stage stopped an answer: at which stage, the category and who flagged it
    (rules or model), the guard's scores, the rule that matched, where the flagged text starts in
    the answer (output: a token index) and how many of its tokens the client had got, and the
    refusal the client is shown."""

    stage: ModerationStage
    category: str
    flagged_by: str
    scores: dict[str, float]
    rule: str = ""
    at_token: int = 0
    released_tokens: int = 0
    refusal: str = ""
    stopped_text: str = ""  # output: what the model had written when it was stopped (held text too)


@dataclass(frozen=True)
class Choice:
    """One generated answer (`reward`: the reward model's score, when it was scored)."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: str  # stop, length, abort, tool_calls, content_filter ("" unknown)
    logprobs: list[PositionLogprobs] = field(default_factory=list)
    reward: float | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # parsed from the answer; `text` is then the rest
    moderation: Moderation | None = None  # set when the safety stage stopped it (content_filter)


@dataclass(frozen=True)
class Generated:
    """What the engine returned for one request: its choices and the tokens it generated."""

    choices: list[Choice]
    completion_tokens: int


@dataclass(frozen=True)
class Candidate:
    """A best-of-n candidate with its reward."""

    index: int
    reward_score: float
    text: str
    completion_tokens: int
    chosen: bool


@dataclass(frozen=True)
class Answer:
    """What the answer stage produced: the answers returned (best first when ranked, each with
    its reward when scored), every ranked candidate (best-of only), the call's token usage (every
    candidate's tokens count) and how a single answer's reward was handled."""

    choices: list[Choice]
    prompt_tokens: int
    completion_tokens: int
    candidates: list[Candidate] = field(default_factory=list)
    reward_status: RewardStatus = "scored"

    @property
    def best(self) -> Choice:
        """The (first) answer; an empty one if the engine returned none."""
        return self.choices[0] if self.choices else Choice(0, "", [], "")

    @property
    def reward_score(self) -> float:
        """The best answer's reward (0 when it was not scored)."""
        return self.best.reward or 0.0


@dataclass(frozen=True)
class FinalEvent:
    """Last event: the stored answer and how the call went."""

    assistant_turn_id: str
    session_version: int
    answer: Answer
    timings: dict[str, float]


ChatEvent = SessionEvent | DeltaEvent | FinalEvent
