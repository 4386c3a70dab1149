"""Stateless completions: the caller sends the whole conversation and nothing is stored (the
OpenAI chat-completions contract). Transport-free, like the chat dataplane, and built from the
same parts: the tokenizer service renders the messages, generation answers (streamed when one
answer is asked for), and the reward model ranks candidates when the caller asks for best-of.

- `n` answers are returned in generation order, unscored;
- `best_of` (≥ n, a chatstack extension) generates that many candidates, ranks them with the
  reward model and returns the best `n`, best first, each with its reward;
- at temperature 0 there is one (greedy) answer: it is generated once and given `n` times (with
  its reward under `best_of`), as gRPC Chat answers greedy best-of once;
- a prompt that does not fit the model's window with `max_tokens` is refused (INVALID_ARGUMENT):
  the caller owns the conversation, so nothing is cut from it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace

from chatstack.core.errors import InvalidRequest
from chatstack.gateway.answering import capped_max_tokens, sampling_params
from chatstack.gateway.clients import GenerationClient, RewardClient, TokenizerClient
from chatstack.gateway.config import GatewayConfig
from chatstack.gateway.metrics import GatewayMetrics
from chatstack.gateway.model import ChatOptions
from chatstack.v1 import common_pb2, generation_pb2


@dataclass(frozen=True)
class CompletionDelta:
    """Text of choice `index` as it is generated."""

    index: int
    text: str
    token_ids: list[int]
    logprobs: list[generation_pb2.PositionLogprobs] = field(default_factory=list)


@dataclass(frozen=True)
class CompletionChoice:
    """One returned answer."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: int
    logprobs: list[generation_pb2.PositionLogprobs] = field(default_factory=list)
    reward: float | None = None  # with best_of


@dataclass(frozen=True)
class Completion:
    """Every choice, and the usage of the call (every candidate's tokens count)."""

    choices: list[CompletionChoice]
    prompt_tokens: int
    completion_tokens: int


class Completions:
    """Stateless completions over the typed backend clients (see module docstring)."""

    def __init__(self, config: GatewayConfig, tokenizer: TokenizerClient, generation: GenerationClient,
                 reward: RewardClient, metrics: GatewayMetrics) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.generation = generation
        self.reward = reward
        self.metrics = metrics

    def check(self, messages: Sequence[common_pb2.ChatMessage], options: ChatOptions) -> int:
        """The call's limits, before any work; returns the effective max_tokens."""
        c = self.config
        if not messages:
            raise InvalidRequest("messages: empty")
        chars = sum(len(m.content) for m in messages)
        if chars > c.max_conversation_chars:
            raise InvalidRequest(f"messages: {chars} characters exceed the limit of "
                                 f"{c.max_conversation_chars}")
        max_tokens = capped_max_tokens(c, options.max_tokens, "max_tokens")
        if options.n > c.max_best_of:
            raise InvalidRequest(f"n: {options.n} exceeds the limit of {c.max_best_of}")
        if options.best_of > 1:
            if options.best_of > c.max_best_of:
                raise InvalidRequest(f"best_of: {options.best_of} exceeds the limit of {c.max_best_of}")
            if options.best_of < options.n:
                raise InvalidRequest(f"best_of: {options.best_of} is less than n ({options.n})")
        return max_tokens

    async def complete(self, messages: Sequence[common_pb2.ChatMessage], options: ChatOptions,
                       ) -> AsyncGenerator[CompletionDelta | Completion]:
        """Deltas (live for one unranked answer; whole choices otherwise), then the Completion."""
        max_tokens = self.check(messages, options)
        rendering = await self.tokenizer.render(list(messages))
        limit = await self.generation.max_model_len()
        if len(rendering.ids) + max_tokens > limit:
            raise InvalidRequest(f"messages: {len(rendering.ids)} prompt tokens + max_tokens {max_tokens} "
                                 f"exceed the model's context window of {limit} tokens")
        ranked = options.best_of > 1
        sampling = sampling_params(self.config, options, max_tokens)
        # Greedy decoding has one answer: n or best_of greedy candidates would be copies of it, so
        # it is generated once (as gRPC Chat does) and given n times.
        greedy = sampling.temperature == 0
        sampling.n = 1 if greedy else options.best_of if ranked else options.n
        live = not ranked and options.n == 1  # one unranked answer streams as it is generated
        started = time.perf_counter()
        if live:
            final: generation_pb2.GenerateResponse | None = None
            async with aclosing(self.generation.stream(rendering.ids, sampling)) as source:
                async for message in source:
                    if message.HasField("delta"):
                        d = message.delta
                        yield CompletionDelta(0, d.text, list(d.token_ids), list(d.logprobs))
                    else:
                        final = message.final
            reply = final or generation_pb2.GenerateResponse()
        else:
            reply = await self.generation.generate(rendering.ids, sampling)
        self.metrics.observe_stage("generation", time.perf_counter() - started)
        choices = [CompletionChoice(c.index, c.text, list(c.token_ids), c.finish_reason, list(c.logprobs))
                   for c in reply.choices]
        if ranked:
            choices = await self._best(messages, choices, len(choices) if greedy else options.n)
        if greedy and options.n > 1:
            choices = [replace(choices[0], index=i) for i in range(options.n)]
        if not live:
            for choice in choices:
                yield CompletionDelta(choice.index, choice.text, choice.token_ids, choice.logprobs)
        yield Completion(choices, len(rendering.ids), reply.usage.completion_tokens)

    async def _best(self, messages: Sequence[common_pb2.ChatMessage], choices: list[CompletionChoice],
                    n: int) -> list[CompletionChoice]:
        """The n best candidates by the reward model, best first, re-indexed."""
        started = time.perf_counter()
        ranking = await self.reward.rank(messages, [c.text for c in choices])
        self.metrics.observe_stage("reward", time.perf_counter() - started)
        self.metrics.best_of.labels(str(len(choices))).inc()
        best = []
        for position, ranked in enumerate(ranking[:n]):
            c = choices[ranked.index]
            best.append(CompletionChoice(position, c.text, c.token_ids, c.finish_reason, c.logprobs,
                                         float(ranked.score)))
        return best
