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

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, replace
from typing import Any

from chatstack.core.errors import InvalidRequest
from chatstack.gateway.clients import GenerationClient, Messages, RewardClient
from chatstack.gateway.metrics import GatewayMetrics
from chatstack.gateway.model import Answer, Candidate, Choice, DeltaEvent, Generated, Moderation, RewardStatus
from chatstack.gateway.plan import Plan, Scoring
from chatstack.gateway.safety_stage import GuardChecker, SafetyStage
from chatstack.gateway.stage_clock import StageClock
from chatstack.gateway.tool_parsers import CallDelta, Parsed, ToolCallCollector, ToolCallParser
from chatstack.safety.stream_monitor import Stopped, StreamMonitor

CONSTRAINT_FIELD = "sampling.constraint"
CONTENT_FILTER = "content_filter"
#: The input check running beside prefill (None: inputs are not checked).
InputVerdict = asyncio.Task[Moderation | None] | None
#: A single answer's reward status by the plan's scoring.
REWARD_STATUS: dict[Scoring, RewardStatus] = {"sync": "scored", "async": "pending", "off": "off"}


@dataclass(frozen=True)
class PromptIds:
    """What the answer stage needs of a rendered prompt: its token ids, for the generator, and
    its messages, for the reward model (which renders them with its own template)."""

    ids: list[int]
    messages: Messages
    route_key: str | None = None  # the session id, when generation routing follows sessions
    input_check: InputVerdict = None  # the input check, when the caller started it (before rendering)


class Answerer:
    """Generation plus reward for one prompt (see module docstring)."""

    def __init__(self, generation: GenerationClient, reward: RewardClient, metrics: GatewayMetrics,
                 safety: SafetyStage) -> None:
        self.generation = generation
        self.reward = reward
        self.metrics = metrics
        self.safety = safety

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
        verdict = prompt.input_check or self.safety.start_input(prompt.messages)  # beside prefill
        try:
            if plan.streams:
                async with aclosing(self._streamed(prompt, plan, clock, verdict)) as source:
                    async for item in source:
                        yield item
                return
            generated = await self._whole(prompt, plan, verdict)
        finally:
            if verdict is not None:
                verdict.cancel()  # no-op once it is done
        clock.seconds["ttft"] = time.perf_counter() - started  # nothing streams before it is whole
        clock.add("generation", started)
        if isinstance(generated, Moderation):
            yield _blocked(generated, plan, len(prompt.ids))
            return
        generated = await self._screen(generated)
        answer = await self._judge(prompt.messages, plan, generated, clock)
        answer = replace(answer, prompt_tokens=len(prompt.ids))
        choices = []
        for c in answer.choices:
            reader = _CallReader.of(plan)
            if reader:
                reader.whole(c)
            choice = reader.apply(c) if reader else c
            choices.append(choice)
            yield DeltaEvent(choice.text, c.token_ids, c.index, c.logprobs, reader.sent if reader else [])
        yield replace(answer, choices=choices)

    async def _whole(self, prompt: PromptIds, plan: Plan, verdict: InputVerdict) -> Generated | Moderation:
        """Every candidate at once; a flagged input cancels the generation."""
        generating = asyncio.ensure_future(self.generation.generate(prompt.ids, plan, prompt.route_key))
        try:
            blocked = await verdict if verdict is not None else None
        except BaseException:
            await cancelled(generating)
            raise
        if blocked is not None:
            await cancelled(generating)
            return blocked
        return await generating

    async def _screen(self, generated: Generated) -> Generated:
        """Whole candidates checked in one call: a flagged one keeps its place, emptied, with its
        moderation."""
        verdicts = await self.safety.check_texts([c.text for c in generated.choices])
        choices = [c if v is None or not v.flagged else
                   replace(c, text="", token_ids=[], logprobs=[], finish_reason=CONTENT_FILTER,
                           moderation=self.safety.refusal("output", v, 0, 0))
                   for c, v in zip(generated.choices, verdicts, strict=True)]
        return replace(generated, choices=choices)

    async def _streamed(self, prompt: PromptIds, plan: Plan, clock: StageClock,
                        verdict: InputVerdict) -> AsyncGenerator[DeltaEvent | Answer]:
        """One answer as it streams: no delta before the input passed, each delta through the
        output monitor (when on) and the tool-call reader; a flag ends it with the refusal."""
        started = time.perf_counter()
        calls = _CallReader.of(plan)
        monitor = self.safety.monitor()
        run = _Run()
        async with AsyncExitStack() as stack:  # closed inner first; the engine's stream last (it aborts)
            engine = await stack.enter_async_context(
                aclosing(self.generation.stream(prompt.ids, plan, prompt.route_key)))
            deltas = await stack.enter_async_context(aclosing(run.deltas(engine, verdict)))
            watched = await stack.enter_async_context(aclosing(monitor.watch(deltas))) if monitor else deltas
            async for item in watched:
                if isinstance(item, Stopped):
                    run.stopped = item
                    break
                assert isinstance(item, DeltaEvent)
                clock.seconds.setdefault("ttft", time.perf_counter() - started)
                run.released.append(item)
                event = calls.read(item) if calls else item
                if event is not None:
                    yield event
        clock.add("generation", started)
        if monitor is not None and monitor.waits:
            self.metrics.monitor_holds.inc(monitor.waits)
        if run.blocked is not None:
            yield _blocked(run.blocked, plan, len(prompt.ids))
            return
        if run.stopped is not None:
            assert monitor is not None
            yield self._stopped(run, calls, monitor, len(prompt.ids))
            return
        if calls and (event := calls.end(0)) is not None:
            yield event
        answer = await self._judge(prompt.messages, plan, run.generated or Generated([], 0), clock)
        answer = replace(answer, prompt_tokens=len(prompt.ids))
        if calls:
            answer = replace(answer, choices=[calls.apply(c) for c in answer.choices])
        yield answer

    def _stopped(self, run: _Run, calls: _CallReader | None, monitor: StreamMonitor[DeltaEvent],
                 prompt_tokens: int) -> Answer:
        """The answer the output monitor stopped: what the client got, then the refusal."""
        stopped = run.stopped
        assert stopped is not None and isinstance(monitor.checker, GuardChecker)
        verdict = monitor.checker.last
        assert verdict is not None
        moderation = replace(self.safety.refusal("output", verdict, stopped.at_token, stopped.released),
                             stopped_text=monitor.text)
        text = calls.content if calls else "".join(d.text for d in run.released)
        ids = [t for d in run.released for t in d.token_ids]
        choice = Choice(0, text, ids, CONTENT_FILTER, moderation=moderation)
        return Answer([choice], prompt_tokens, monitor.tokens, reward_status="off")

    async def _judge(self, messages: Messages, plan: Plan, generated: Generated, clock: StageClock) -> Answer:
        """Rank the candidates, or score the single answer as the plan says; a greedy answer n times."""
        choices = generated.choices
        t = time.perf_counter()
        if plan.ranked:
            clean = [c for c in choices if c.moderation is None]
            if not clean:  # every candidate flagged: the first one's refusal
                return Answer(choices[:1], 0, generated.completion_tokens, reward_status="off")
            answer = await self._rank(messages, plan, clean)
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


async def cancelled(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait until it has stopped (a generator it was running is then free)."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _blocked(moderation: Moderation, plan: Plan, prompt_tokens: int) -> Answer:
    """The answer to an input the safety stage flagged: no text, the refusal, no tokens."""
    choices = [Choice(i, "", [], CONTENT_FILTER, moderation=moderation) for i in range(plan.n)]
    return Answer(choices, prompt_tokens, 0, reward_status="off")


class _Run:
    """One streamed answer's state: the engine's final result, the input's moderation when it
    was flagged, the deltas released to the client, and the monitor's stop."""

    def __init__(self) -> None:
        self.generated: Generated | None = None
        self.blocked: Moderation | None = None
        self.released: list[DeltaEvent] = []
        self.stopped: Stopped | None = None

    async def deltas(self, source: AsyncIterator[DeltaEvent | Generated],
                     verdict: InputVerdict) -> AsyncGenerator[DeltaEvent]:
        """The engine's deltas, none before the input's verdict (the first one is awaited beside
        it); a flagged input ends them (and cancels the engine's work at once, first token or not).
        The engine's final result is kept aside."""
        it = aiter(source)
        if verdict is not None:
            first = asyncio.ensure_future(anext(it, None))
            try:
                self.blocked = await verdict
            except BaseException:
                await cancelled(first)
                raise
            if self.blocked is not None:
                await cancelled(first)  # the stream is then closed: the engine aborts
                return
            head = await first
            if head is None:
                return
            it = _chained(head, it)
        async for item in it:
            if isinstance(item, DeltaEvent):
                yield item
            else:
                self.generated = item


async def _chained(head: DeltaEvent | Generated, rest: AsyncIterator[DeltaEvent | Generated]
                   ) -> AsyncGenerator[DeltaEvent | Generated]:
    """`head`, then `rest`."""
    yield head
    async for item in rest:
        yield item


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
