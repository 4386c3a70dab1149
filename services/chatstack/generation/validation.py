"""Request validation before the engine sees a request; messages name the field."""

from __future__ import annotations

from chatstack.core.errors import InvalidRequest
from chatstack.generation.model import PromptInput, SamplingOptions


def validate_sampling(s: SamplingOptions, max_n: int, max_logprobs: int) -> None:
    """Check sampling parameters that do not depend on the prompt."""
    if s.n < 1 or s.n > max_n:
        raise InvalidRequest(f"sampling.n: {s.n} is outside [1, {max_n}]")
    if s.temperature is not None and s.temperature < 0:
        raise InvalidRequest(f"sampling.temperature: must be >= 0, got {s.temperature}")
    if s.top_p is not None and not 0 < s.top_p <= 1:
        raise InvalidRequest(f"sampling.top_p: must be in (0, 1], got {s.top_p}")
    if s.top_k is not None and s.top_k < -1:
        raise InvalidRequest(f"sampling.top_k: must be -1, 0 or positive, got {s.top_k}")
    if s.min_p is not None and not 0 <= s.min_p <= 1:
        raise InvalidRequest(f"sampling.min_p: must be in [0, 1], got {s.min_p}")
    for name, value in (("presence_penalty", s.presence_penalty),
                        ("frequency_penalty", s.frequency_penalty)):
        if not -2 <= value <= 2:
            raise InvalidRequest(f"sampling.{name}: must be in [-2, 2], got {value}")
    if s.repetition_penalty is not None and s.repetition_penalty <= 0:
        raise InvalidRequest(f"sampling.repetition_penalty: must be > 0, got {s.repetition_penalty}")
    if s.logprobs is not None and s.logprobs > max_logprobs:
        raise InvalidRequest(f"sampling.logprobs: {s.logprobs} exceeds the limit of {max_logprobs}")
    if s.max_tokens and s.min_tokens > s.max_tokens:
        raise InvalidRequest(f"sampling.min_tokens: {s.min_tokens} exceeds max_tokens {s.max_tokens}")
    if any(not stop for stop in s.stop):
        raise InvalidRequest("sampling.stop: stop strings must be non-empty")


def validate_prompt(prompt: PromptInput, vocab_size: int) -> None:
    """Check the prompt itself (emptiness, ids inside the vocabulary)."""
    if prompt.token_ids is not None:
        if not prompt.token_ids:
            raise InvalidRequest("prompt.token_ids: empty prompt")
        for i, token_id in enumerate(prompt.token_ids):
            if token_id >= vocab_size:
                raise InvalidRequest(
                    f"prompt.token_ids[{i}]: id {token_id} is outside the vocabulary [0, {vocab_size})"
                )
    elif not prompt.text:
        raise InvalidRequest("prompt: empty prompt (set text or token_ids)")


def validate_length(prompt_tokens: int, max_tokens: int, max_model_len: int) -> None:
    """Prompt plus max_tokens must fit the context."""
    if prompt_tokens + max_tokens > max_model_len:
        raise InvalidRequest(
            f"prompt + max_tokens: {prompt_tokens} prompt tokens + {max_tokens} max_tokens = "
            f"{prompt_tokens + max_tokens} exceed max_model_len {max_model_len}"
        )
