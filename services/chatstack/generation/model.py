"""Domain objects of the generation service (no gRPC, no vLLM)."""

from __future__ import annotations

from dataclasses import dataclass, field

from chatstack.core.structured_output import Constraint


@dataclass(frozen=True)
class SamplingOptions:
    """Sampling parameters; None means the engine default."""

    n: int = 1
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    max_tokens: int = 0  # 0 = the service default
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float | None = None
    logprobs: int | None = None
    ignore_eos: bool = False
    min_tokens: int = 0
    constraint: Constraint | None = None


@dataclass(frozen=True)
class PromptInput:
    """Text to tokenize or token ids already tokenized (exactly one is set)."""

    text: str | None = None
    token_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """A token with its log-probability."""

    token_id: int
    logprob: float
    token: str


@dataclass(frozen=True)
class PositionLogprobs:
    """The sampled token and the top alternatives at one position."""

    sampled: TokenLogprob
    top: tuple[TokenLogprob, ...]


@dataclass(frozen=True)
class Delta:
    """New tokens of one choice."""

    index: int
    text: str
    token_ids: list[int]
    logprobs: list[PositionLogprobs] = field(default_factory=list)


@dataclass
class ChoiceResult:
    """A finished choice."""

    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = ""  # "stop" | "length" | "abort"
    stop_reason: str = ""
    logprobs: list[PositionLogprobs] = field(default_factory=list)


@dataclass(frozen=True)
class Timings:
    """Per-request timings measured in the service."""

    queue_seconds: float
    ttft_seconds: float
    mean_itl_seconds: float
    e2e_seconds: float


@dataclass(frozen=True)
class GenerationResult:
    """Everything about a finished request."""

    choices: list[ChoiceResult]
    prompt_tokens: int
    completion_tokens: int
    timings: Timings
    model: str


@dataclass(frozen=True)
class ModelInfo:
    """What GetModelInfo reports."""

    model: str
    max_model_len: int
    vocab_size: int
    max_n: int
    default_max_tokens: int
    version: str = ""  # chatstack.core.model_version
