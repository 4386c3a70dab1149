"""Stateless completions: the caller sends the whole conversation and nothing is stored (the
OpenAI chat-completions contract). Transport-free, like the chat dataplane, and built from the
same parts: the tokenizer service renders the messages and the answer stage (`Answerer`, the
one gRPC Chat uses) answers them as the request's `Plan` says (n, best_of, greedy, scoring).
A prompt that does not fit the model's window with `max_tokens` is refused (INVALID_ARGUMENT):
the caller owns the conversation, so nothing is cut from it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing

from chatstack.core.errors import InvalidRequest
from chatstack.gateway.answering import Answerer, PromptIds, cancelled
from chatstack.gateway.clients import GenerationClient, TokenizerClient
from chatstack.gateway.config import GatewayConfig
from chatstack.gateway.metrics import GatewayMetrics
from chatstack.gateway.model import Answer, DeltaEvent
from chatstack.gateway.plan import Plan
from chatstack.gateway.session_records import Message
from chatstack.gateway.stage_clock import StageClock


class Completions:
    """Stateless completions over the answer stage (see module docstring)."""

    def __init__(self, config: GatewayConfig, tokenizer: TokenizerClient, generation: GenerationClient,
                 answerer: Answerer, metrics: GatewayMetrics) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.generation = generation
        self.answerer = answerer
        self.metrics = metrics

    def check(self, messages: Sequence[Message]) -> None:
        """The conversation's limits, before any work."""
        if not messages:
            raise InvalidRequest("messages: empty")
        chars = sum(len(m.content) + sum(len(c.arguments) for c in m.tool_calls) for m in messages)
        if chars > self.config.max_conversation_chars:
            raise InvalidRequest(f"messages: {chars} characters exceed the limit of "
                                 f"{self.config.max_conversation_chars}")

    async def complete(self, messages: Sequence[Message], plan: Plan,
                       ) -> AsyncGenerator[DeltaEvent | Answer]:
        """Deltas (live for one streamed answer; whole choices otherwise), then the Answer."""
        self.check(messages)
        clock = StageClock()
        t = time.perf_counter()
        tools = plan.options.tools
        verdict = self.answerer.safety.start_input(messages)  # read while the prompt is rendered
        try:
            rendering = await self.tokenizer.render(list(messages), tools=tools.tools if tools else ())
            limit = await self.generation.max_model_len()
            if len(rendering.ids) + plan.max_tokens > limit:
                raise InvalidRequest(f"messages: {len(rendering.ids)} prompt tokens + max_tokens "
                                     f"{plan.max_tokens} "
                                     f"exceed the model's context window of {limit} tokens")
            clock.add("template", t)
            prompt = PromptIds(rendering.ids, messages, input_check=verdict)
            async with aclosing(self.answerer.answer(prompt, plan, clock)) as source:
                async for item in source:
                    if isinstance(item, Answer):
                        clock.finish(self.metrics)
                    yield item
        finally:
            if verdict is not None and not verdict.done():
                await cancelled(verdict)
