"""Answering a prompt: generate (streamed for one answer, all at once for best-of-n), then let
the reward model rank the candidates or score the single answer (now, later or never: the
gateway's `single_answer_scoring`; a later score is the dataplane's, once the answer is stored).

`Answerer.answer` yields the answer's text as `DeltaEvent`s and, last, the `Answer` itself.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextlib import aclosing

from chatstack.core.errors import InvalidRequest
from chatstack.gateway.clients import GenerationClient, RewardClient
from chatstack.gateway.config import GatewayConfig
from chatstack.gateway.downstream import StageClock
from chatstack.gateway.metrics import GatewayMetrics
from chatstack.gateway.model import Answer, Candidate, ChatOptions, DeltaEvent
from chatstack.gateway.prompting import Prompt
from chatstack.v1 import generation_pb2


def capped_max_tokens(config: GatewayConfig, requested: int, field: str) -> int:
    """The answer length a call gets (0: the gateway's default), refused past the limit (the
    message names the caller's `field`)."""
    max_tokens = requested or config.default_max_tokens
    if max_tokens > config.max_tokens_limit:
        raise InvalidRequest(f"{field}: {max_tokens} exceeds the limit of {config.max_tokens_limit}")
    return max_tokens


def sampling_params(config: GatewayConfig, options: ChatOptions,
                    max_tokens: int) -> generation_pb2.SamplingParams:
    """The generation request's sampling for a Chat. Greedy best-of-n answers once: n greedy
    candidates would be n copies of one answer."""
    temperature = config.default_temperature if options.temperature is None else options.temperature
    n = 1 if temperature == 0 else max(1, options.best_of)
    sampling = generation_pb2.SamplingParams(
        n=n, max_tokens=max_tokens, min_tokens=1, stop=list(options.stop), temperature=temperature,
        presence_penalty=options.presence_penalty, frequency_penalty=options.frequency_penalty)
    if options.logprobs is not None:
        sampling.logprobs = options.logprobs
    for name in ("top_p", "top_k", "seed"):
        value = getattr(options, name)
        if value is not None:
            setattr(sampling, name, value)
    return sampling


class Answerer:
    """Generation plus reward for one prompt (see module docstring)."""

    def __init__(self, config: GatewayConfig, generation: GenerationClient, reward: RewardClient,
                 metrics: GatewayMetrics) -> None:
        self.config = config
        self.generation = generation
        self.reward = reward
        self.metrics = metrics

    async def answer(self, prompt: Prompt, max_tokens: int, options: ChatOptions, clock: StageClock,
                     session_id: str | None = None) -> AsyncGenerator[DeltaEvent | Answer]:
        """Deltas of the answer, then the scored Answer; generated on the session's replica when
        generation routing follows sessions (best-of-n too: the candidates share the prompt)."""
        sampling = sampling_params(self.config, options, max_tokens)
        if sampling.n == 1:
            final: generation_pb2.GenerateResponse | None = None
            async with aclosing(self._stream(prompt, sampling, clock, session_id)) as source:
                async for item in source:
                    if isinstance(item, DeltaEvent):
                        yield item
                    else:
                        final = item
            answer = _single_answer(prompt, final)
            scoring = self.config.single_answer_scoring
            if scoring == "sync" and answer.text:
                t = time.perf_counter()
                # The reward model's window may be shorter than the generator's: the reward
                # service fits the conversation to it on the exact rendered length.
                answer.reward_score = await self.reward.score(prompt.messages, answer.text)
                clock.add("reward", t)
            elif scoring != "sync":
                answer.reward_status = "pending" if scoring == "async" else "off"
        else:
            answer = await self._best_of(prompt, sampling, clock, session_id)
            yield DeltaEvent(answer.text, list(answer.token_ids))
        yield answer

    async def _stream(self, prompt: Prompt, sampling: generation_pb2.SamplingParams,
                      clock: StageClock, session_id: str | None
                      ) -> AsyncGenerator[DeltaEvent | generation_pb2.GenerateResponse]:
        """The stream's deltas as events, then its final message."""
        started, first = time.perf_counter(), True
        async with aclosing(self.generation.stream(prompt.ids, sampling, session_id)) as source:
            async for message in source:
                if message.HasField("delta"):
                    if first:
                        clock.seconds["ttft"] = time.perf_counter() - started
                        first = False
                    yield DeltaEvent(message.delta.text, list(message.delta.token_ids))
                else:
                    yield message.final
        clock.add("generation", started)

    async def _best_of(self, prompt: Prompt, sampling: generation_pb2.SamplingParams,
                       clock: StageClock, session_id: str | None) -> Answer:
        started = time.perf_counter()
        reply = await self.generation.generate(prompt.ids, sampling, session_id)
        clock.seconds["ttft"] = time.perf_counter() - started  # nothing streams before ranking
        t = clock.add("generation", started)
        self.metrics.best_of.labels(str(sampling.n)).inc()
        ranked = await self.reward.rank(prompt.messages, [c.text for c in reply.choices])
        clock.add("reward", t)
        best = ranked[0].index
        winner = reply.choices[best]
        return Answer(
            text=winner.text, token_ids=list(winner.token_ids), reward_score=ranked[0].score,
            candidates=[Candidate(r.index, r.score, r.text, len(reply.choices[r.index].token_ids),
                                  r.index == best) for r in sorted(ranked, key=lambda r: r.index)],
            prompt_tokens=len(prompt.ids), completion_tokens=reply.usage.completion_tokens,
            finish_reason=winner.finish_reason)


def _single_answer(prompt: Prompt, final: generation_pb2.GenerateResponse | None) -> Answer:
    """The Answer of a one-choice stream's final message (empty if the stream had none)."""
    if final is None or not final.choices:
        return Answer(prompt_tokens=len(prompt.ids))
    choice = final.choices[0]
    return Answer(text=choice.text, token_ids=list(choice.token_ids), prompt_tokens=len(prompt.ids),
                  completion_tokens=final.usage.completion_tokens, finish_reason=choice.finish_reason)
