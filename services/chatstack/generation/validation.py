"""Request validation before the engine sees a request; messages name the field.

These rules are vLLM's own (`SamplingParams._verify_args`, `SamplingParams.verify`, the input
processor's length check), checked here first so a client gets our message and nothing reaches
the engine that it would refuse. The engine boundary (`engine.py`) also maps any validation error
vLLM raises to INVALID_ARGUMENT, so a rule added in a later vLLM cannot become INTERNAL.
"""

from __future__ import annotations

import math

from chatstack.core.errors import InvalidRequest
from chatstack.core.offload import certainly_too_long
from chatstack.generation.model import PromptInput, SamplingOptions

MAX_TEMPERATURE = 2.0  # vLLM: temperature must be in [0, 2]
SEED_LIMIT = 2**64  # seeds travel as uint64; vLLM gives choice i the seed `seed + i`
MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 256
MAX_STOP_TOKEN_IDS = 64


def _finite(name: str, value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise InvalidRequest(f"sampling.{name}: must be a finite number, got {value}")


def validate_sampling(s: SamplingOptions, max_n: int, max_logprobs: int, vocab_size: int,
                      max_tokens: int) -> None:
    """Check sampling parameters that do not depend on the prompt; `max_tokens` is the
    effective one (the request's or the service default)."""
    if s.n < 1 or s.n > max_n:
        raise InvalidRequest(f"sampling.n: {s.n} is outside [1, {max_n}]")
    for name in ("temperature", "top_p", "min_p", "presence_penalty", "frequency_penalty",
                 "repetition_penalty"):
        _finite(name, getattr(s, name))
    if s.temperature is not None and not 0 <= s.temperature <= MAX_TEMPERATURE:
        raise InvalidRequest(f"sampling.temperature: must be in [0, {MAX_TEMPERATURE:g}], "
                             f"got {s.temperature}")
    if s.temperature == 0 and s.n > 1:
        raise InvalidRequest(f"sampling.n: greedy sampling (temperature 0) gives {s.n} identical "
                             "choices; ask n=1, or sample with temperature > 0")
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
    if s.min_tokens > max_tokens:
        raise InvalidRequest(f"sampling.min_tokens: {s.min_tokens} exceeds max_tokens {max_tokens}")
    _validate_stops(s, vocab_size)


def _validate_stops(s: SamplingOptions, vocab_size: int) -> None:
    if len(s.stop) > MAX_STOP_STRINGS:
        raise InvalidRequest(f"sampling.stop: {len(s.stop)} strings exceed the limit of {MAX_STOP_STRINGS}")
    for i, stop in enumerate(s.stop):
        if not stop:
            raise InvalidRequest(f"sampling.stop[{i}]: empty; stop strings must be non-empty")
        if len(stop) > MAX_STOP_CHARS:
            raise InvalidRequest(f"sampling.stop[{i}]: {len(stop)} characters exceed the limit of "
                                 f"{MAX_STOP_CHARS}")
    if len(s.stop_token_ids) > MAX_STOP_TOKEN_IDS:
        raise InvalidRequest(f"sampling.stop_token_ids: {len(s.stop_token_ids)} ids exceed the limit "
                             f"of {MAX_STOP_TOKEN_IDS}")
    for i, token_id in enumerate(s.stop_token_ids):
        if not 0 <= token_id < vocab_size:
            raise InvalidRequest(f"sampling.stop_token_ids[{i}]: id {token_id} is outside the "
                                 f"vocabulary [0, {vocab_size})")


def engine_seed(seed: int | None, n: int) -> int | None:
    """The seed handed to vLLM. Every uint64 seed is valid; vLLM seeds choice i with `seed + i`,
    which must stay below 2^64, so a seed within n of the top is folded into [0, 2^63) (the same
    request still gives the same tokens)."""
    if seed is None or seed + n - 1 < SEED_LIMIT:
        return seed
    return seed % 2**63


def validate_prompt(prompt: PromptInput, vocab_size: int, max_model_len: int,
                    chars_per_token: int) -> None:
    """Check the prompt itself before it is tokenized: emptiness, ids inside the vocabulary, and
    a length that cannot fit the context rejected by its size alone (no tokenizing)."""
    if prompt.token_ids is not None:
        ids = prompt.token_ids
        if not ids:
            raise InvalidRequest("prompt.token_ids: empty prompt")
        if len(ids) >= max_model_len:
            raise InvalidRequest(f"prompt.token_ids: {len(ids)} ids leave no room to generate in "
                                 f"max_model_len {max_model_len}")
        for i, token_id in enumerate(ids):
            if token_id >= vocab_size:
                raise InvalidRequest(
                    f"prompt.token_ids[{i}]: id {token_id} is outside the vocabulary [0, {vocab_size})"
                )
    elif not prompt.text:
        raise InvalidRequest("prompt: empty prompt (set text or token_ids)")
    elif certainly_too_long(len(prompt.text), max_model_len, chars_per_token):
        raise InvalidRequest(f"prompt.text: {len(prompt.text)} characters cannot fit max_model_len "
                             f"{max_model_len} tokens")


def validate_length(prompt_tokens: int, max_tokens: int, max_model_len: int) -> None:
    """Prompt plus max_tokens must fit the context."""
    if prompt_tokens + max_tokens > max_model_len:
        raise InvalidRequest(
            f"prompt + max_tokens: {prompt_tokens} prompt tokens + {max_tokens} max_tokens = "
            f"{prompt_tokens + max_tokens} exceed max_model_len {max_model_len}"
        )
