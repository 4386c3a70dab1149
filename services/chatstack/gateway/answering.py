"""The answer stage: the only code that turns a prompt and a `Plan` into answers, for every front
door (gRPC Chat, chat completions, Responses). Generate, streamed when the plan has one answer
and all at once otherwise; let the reward model rank best-of candidates, or score a single answer
(now, later or never: the plan's `scoring`; a later score is the dataplane's, once the answer is
stored); give a greedy answer n times. Its stages (ttft, generation, reward) go on the call's
`StageClock`.

`Answerer.answer` yields the answers' text as `DeltaEvent`s (live for a streamed answer, whole
afterwards otherwise) and, last, the `Answer`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, replace

from chatstack.core.errors import InvalidRequest
from chatstack.gateway.clients import GenerationClient, Messages, RewardClient
from chatstack.gateway.metrics import GatewayMetrics
from chatstack.gateway.model import Answer, Candidate, Choice, DeltaEvent, Generated, RewardStatus
from chatstack.gateway.plan import Plan, Scoring
from chatstack.gateway.stage_clock import StageClock
from chatstack.gateway.tool_parsers import CallDelta, Parsed, ToolCallCollector, ToolCallParser

CONSTRAINT_FIELD = "sampling.constraint"
#: A single answer's reward status by the plan's scoring.
REWARD_STATUS: dict[Scoring, RewardStatus] = {"sync": "scored", "async": "pending", "off": "off"}


@dataclass(frozen=True)
class PromptIds:
    """What the answer stage needs of a rendered prompt: its token ids, for the generator, and
    its messages, for the reward model (which renders them with its own template)."""

    ids: list[int]
    messages: Messages
    route_key: str | None = None  # the session id, when generation routing follows sessions


class Answerer:
    """Generation plus reward for one prompt (see module docstring)."""

    def __init__(self, generation: GenerationClient, reward: RewardClient, metrics: GatewayMetrics) -> None:
        self.generation = generation
        self.reward = reward
        self.metrics = metrics

    async def answer(self, prompt: PromptIds, plan: Plan,
                     clock: StageClock) -> AsyncGenerator[DeltaEvent | Answer]:
        """Deltas of the answers, then the Answer (see module docstring). A constraint the
        generation service refuses is named by the caller's field."""
        try:
            async with aclosing(self._answer(prompt, plan, clock)) as source:
                async for item in source:
                    yield item
        except InvalidRequest as exc:
            raise _renamed(exc, plan) from exc

    async def _answer(self, prompt: PromptIds, plan: Plan,
                      clock: StageClock) -> AsyncGenerator[DeltaEvent | Answer]:
        started = time.perf_counter()
        generated: Generated | None = None
        calls = _CallReader.of(plan)
        if plan.streams:
            async with aclosing(self.generation.stream(prompt.ids, plan, prompt.route_key)) as source:
                async for item in source:  # closed early: the stream is cancelled, the engine aborts
                    if isinstance(item, DeltaEvent):
                        clock.seconds.setdefault("ttft", time.perf_counter() - started)
                        event = calls.read(item) if calls else item
                        if event is not None:
                            yield event
                    else:
                        generated = item
            if calls and (event := calls.end(0)) is not None:
                yield event
        else:
            generated = await self.generation.generate(prompt.ids, plan, prompt.route_key)
            clock.seconds["ttft"] = time.perf_counter() - started  # nothing streams before it is whole
        clock.add("generation", started)
        generated = generated or Generated([], 0)
        answer = await self._judge(prompt.messages, plan, generated, clock)
        answer = replace(answer, prompt_tokens=len(prompt.ids))
        if plan.streams:
            if calls:
                answer = replace(answer, choices=[calls.apply(c) for c in answer.choices])
        else:
            choices = []
            for c in answer.choices:
                reader = _CallReader.of(plan)
                if reader:
                    reader.whole(c)
                choice = reader.apply(c) if reader else c
                choices.append(choice)
                yield DeltaEvent(choice.text, c.token_ids, c.index, c.logprobs,
                                 reader.sent if reader else [])
            answer = replace(answer, choices=choices)
        yield answer

    async def _judge(self, messages: Messages, plan: Plan, generated: Generated, clock: StageClock) -> Answer:
        """Rank the candidates, or score the single answer as the plan says; a greedy answer n times."""
        choices = generated.choices
        t = time.perf_counter()
        if plan.ranked:
            answer = await self._rank(messages, plan, choices)
            clock.add("reward", t)
            return replace(answer, completion_tokens=generated.completion_tokens)
        if plan.scoring == "sync" and choices and choices[0].text:
            # The reward model's window may be shorter than the generator's: the reward service
            # fits the conversation to it on the exact rendered length.
            choices = [replace(choices[0], reward=await self.reward.score(messages, choices[0].text))]
            clock.add("reward", t)
        if plan.greedy and plan.n > 1 and choices:
            choices = [replace(choices[0], index=i) for i in range(plan.n)]
        return Answer(choices, 0, generated.completion_tokens, reward_status=REWARD_STATUS[plan.scoring])

    async def _rank(self, messages: Messages, plan: Plan, choices: list[Choice]) -> Answer:
        """The best `n` candidates by the reward model, best first and re-indexed, each with its
        reward; every candidate in generation order, the best one marked chosen."""
        self.metrics.best_of.labels(str(len(choices))).inc()
        ranking = await self.reward.rank(messages, [c.text for c in choices])
        best = ranking[0].index
        candidates = [Candidate(r.index, r.score, choices[r.index].text, len(choices[r.index].token_ids),
                                r.index == best) for r in sorted(ranking, key=lambda r: r.index)]
        kept = [replace(choices[r.index], index=position, reward=r.score)
                for position, r in enumerate(ranking[:plan.n])]
        return Answer(kept, 0, 0, candidates)


def _renamed(exc: InvalidRequest, plan: Plan) -> InvalidRequest:
    """The generation service's refusal of a constraint (`sampling.constraint.<kind>: why`) under
    the caller's name of it; any other refusal as it was."""
    field, sep, why = str(exc).partition(": ")
    if not sep or not field.startswith(CONSTRAINT_FIELD):
        return exc
    return InvalidRequest(f"{plan.constraint_field}: {why}")


class _CallReader:
    """One answer's tool calls read as its text arrives: deltas of content and calls out, then
    the answer's choice with its calls (finish reason tool_calls when it stopped on its own)."""

    def __init__(self, parser: ToolCallParser, limit: int | None) -> None:
        self.parser = parser
        self.collector = ToolCallCollector(limit)
        self.content = ""
        self.sent: list[CallDelta] = []

    @classmethod
    def of(cls, plan: Plan) -> _CallReader | None:
        """A reader for one answer of `plan`, or None when its calls are not read back."""
        parser = plan.tool_parser()
        tools = plan.options.tools
        return cls(parser, tools.call_limit) if parser and tools else None

    def _take(self, parsed: Parsed) -> tuple[str, list[CallDelta]]:
        calls = self.collector.keep(parsed.calls)
        self.content += parsed.content
        self.sent += calls
        return parsed.content, calls

    def read(self, delta: DeltaEvent) -> DeltaEvent | None:
        """A streamed delta as content and call deltas (None when it holds neither yet)."""
        text, calls = self._take(self.parser.feed(delta.text))
        if not text and not calls:
            return None
        return DeltaEvent(text, delta.token_ids, delta.index, delta.logprobs, calls)

    def end(self, index: int) -> DeltaEvent | None:
        """What the end of the stream releases, as a last delta."""
        text, calls = self._take(self.parser.finish())
        return DeltaEvent(text, [], index, [], calls) if text or calls else None

    def whole(self, choice: Choice) -> None:
        """Read a whole answer."""
        self._take(self.parser.feed(choice.text))
        self._take(self.parser.finish())

    def apply(self, choice: Choice) -> Choice:
        """`choice` with its text split into content and calls."""
        calls = tuple(self.collector.calls)
        finish = "tool_calls" if calls and choice.finish_reason == "stop" else choice.finish_reason
        return replace(choice, text=self.content, tool_calls=calls, finish_reason=finish)
