"""ChatOrchestrator: one Chat = session -> tokenizer -> generation -> reward -> session.

Latency: the calls before generation run in two rounds, each two calls side by side: (1) count
the message's tokens and read the session's context window (before the push, see
`context_window`), then (2) push the user turn (at the version read, so a concurrent change is
ABORTED rather than answered from a stale window) and render the chat template.

Consistency: a call that fails or is cancelled at any stage undoes its own session writes
(pops its user turn with the version it produced, or deletes the session it created), so the
session is exactly as it was before the call. Cancelling the call cancels the downstream
generation stream, which aborts the request in the engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from chatstack.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    Unauthenticated,
    VersionConflict,
)
from chatstack.gateway.config import GatewayConfig
from chatstack.gateway.context_window import newest_that_fit, turns_to_drop
from chatstack.gateway.downstream import Downstream, StageClock
from chatstack.gateway.metrics import GatewayMetrics
from chatstack.gateway.model import (
    Answer,
    Candidate,
    ChatEvent,
    ChatOptions,
    DeltaEvent,
    FinalEvent,
    SessionEvent,
)
from chatstack.v1 import common_pb2, generation_pb2, reward_pb2, session_pb2, tokenizer_pb2

log = logging.getLogger(__name__)
A = TypeVar("A")
B = TypeVar("B")
ROLE_PB = {"system": common_pb2.ROLE_SYSTEM, "user": common_pb2.ROLE_USER,
           "assistant": common_pb2.ROLE_ASSISTANT}


# A session call that failed with one of these certainly changed nothing.
_REFUSED = (InvalidRequest, NotFound, FailedPrecondition, VersionConflict, AlreadyExists, Unauthenticated)


@dataclass
class _Undo:
    """The session writes of one call so far, to undo on failure."""

    session_id: str = ""
    created: bool = False
    pushed_version: int | None = None  # version right after our user-turn push
    pending_push: asyncio.Future[session_pb2.PushTurnResponse] | None = None  # push not yet awaited

    def done(self) -> None:
        """The call succeeded: nothing to undo any more."""
        self.created, self.pushed_version, self.pending_push = False, None, None


@dataclass
class _Context:
    """A session's context as read (system prompt and newest turns, oldest first), plus the
    message being answered as the last turn once it is appended."""

    system_prompt: str
    system_tokens: int
    version: int
    omitted: int = 0  # older turns the read already left out
    messages: list[common_pb2.ChatMessage] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    turn_ids: list[str] = field(default_factory=list)

    def append(self, role: int, content: str, tokens: int, turn_id: str = "") -> None:
        self.messages.append(common_pb2.ChatMessage(role=role, content=content))  # type: ignore[arg-type]
        self.tokens.append(tokens)
        self.turn_ids.append(turn_id)


@dataclass(frozen=True)
class _Prompt:
    """The rendered context sent to the model."""

    messages: list[common_pb2.ChatMessage]
    prompt: str
    ids: list[int]
    context_turns: int
    truncated: bool


class ChatOrchestrator:
    """Runs the chat flows over the downstream services (see module docstring)."""

    def __init__(self, config: GatewayConfig, downstream: Downstream, metrics: GatewayMetrics) -> None:
        self.config = config
        self.ds = downstream
        self.metrics = metrics
        self._max_model_len: int | None = None
        self._overhead: tuple[int, int] | None = None  # (fixed, per message)

    # -- cached model facts ----------------------------------------------------------------
    async def max_model_len(self) -> int:
        """The generation model's context length (asked once)."""
        if self._max_model_len is None:
            info = await self.ds.call("generation", self.ds.generation.GetModelInfo,
                                      generation_pb2.GetModelInfoRequest())
            self._max_model_len = int(info.max_model_len)
        return self._max_model_len

    async def template_overhead(self) -> tuple[int, int]:
        """Tokens the chat template adds: fixed (BOS, generation prompt) and per message."""
        if self._overhead is None:
            def msgs(n: int) -> list[common_pb2.ChatMessage]:
                return [common_pb2.ChatMessage(role=common_pb2.ROLE_USER if i % 2 == 0 else
                                               common_pb2.ROLE_ASSISTANT, content="x") for i in range(n)]
            one = await self._render(msgs(1))
            three = await self._render(msgs(3))
            x = (await self.count(["x"]))[0]
            per_message = max(0, (len(three[1]) - len(one[1])) // 2 - x)
            self._overhead = (max(0, len(one[1]) - x - per_message), per_message)
        return self._overhead

    # -- small downstream helpers ------------------------------------------------------------
    async def count(self, texts: list[str]) -> list[int]:
        """Token counts (no special tokens) from the tokenizer service."""
        reply = await self.ds.call("tokenizer", self.ds.tokenizer.CountTokens,
                                   tokenizer_pb2.CountTokensRequest(texts=texts))
        return list(reply.counts)

    async def _render(self, messages: list[common_pb2.ChatMessage]) -> tuple[str, list[int]]:
        reply = await self.ds.call("tokenizer", self.ds.tokenizer.ApplyChatTemplate,
                                   tokenizer_pb2.ApplyChatTemplateRequest(
                                       messages=messages, add_generation_prompt=True))
        return reply.prompt, list(reply.token_ids)

    async def create_session(self, owner: str, system_prompt: str, metadata: dict[str, str] | None = None,
                             also_count: str | None = None, session_id: str = "",
                             ) -> tuple[session_pb2.Session, int]:
        """A new session (with `session_id`, or one the session service picks); the system
        prompt's tokens are counted by the tokenizer, in the same call as `also_count` (a Chat's
        first message), whose count is returned (0 if None)."""
        texts = ([also_count] if also_count is not None else []) + ([system_prompt] if system_prompt else [])
        counts = await self.count(texts) if texts else []
        tokens = counts[-1] if system_prompt else 0
        reply = await self.ds.call("session", self.ds.session.CreateSession,
                                   session_pb2.CreateSessionRequest(
                                       session_id=session_id, system_prompt=system_prompt,
                                       system_prompt_tokens=tokens, metadata=metadata or {}), owner=owner)
        return reply.session, (counts[0] if also_count is not None else 0)

    # -- validation ---------------------------------------------------------------------------
    def _check(self, message: str | None, options: ChatOptions) -> int:
        if message is not None:
            if not message.strip():
                raise InvalidRequest("message: empty")
            if len(message) > self.config.max_message_chars:
                raise InvalidRequest(f"message: {len(message)} characters exceed the limit of "
                                     f"{self.config.max_message_chars}")
        max_tokens = options.max_tokens or self.config.default_max_tokens
        if max_tokens > self.config.max_tokens_limit:
            raise InvalidRequest(f"options.max_tokens: {max_tokens} exceeds the limit of "
                                 f"{self.config.max_tokens_limit}")
        if options.best_of > self.config.max_best_of:
            raise InvalidRequest(f"options.best_of: {options.best_of} exceeds the limit of "
                                 f"{self.config.max_best_of}")
        return max_tokens

    # -- flows --------------------------------------------------------------------------------
    async def chat(self, owner: str, session_id: str, system_prompt: str, message: str,
                   options: ChatOptions) -> AsyncIterator[ChatEvent]:
        """Push the user message, answer it, store the answer; undo everything on failure."""
        max_tokens = self._check(message, options)
        clock = StageClock()
        undo = _Undo(session_id=session_id)
        try:
            budget = await self._budget(max_tokens, options)
            t = time.perf_counter()
            if session_id:  # round 1: count the message | read the window
                (user_tokens,), ctx = await _both(self.count([message]),
                                                  self._read_context(owner, session_id, budget))
            else:  # a new session holds only its system prompt: nothing to read
                # The id is chosen here, before the call, so a call cancelled while the session
                # is being created still knows what to delete (the create may land regardless).
                undo.session_id, undo.created = uuid.uuid4().hex, True
                session, user_tokens = await self.create_session(
                    owner, system_prompt, also_count=message, session_id=undo.session_id)
                ctx = _Context(session.system_prompt, session.system_prompt_tokens, session.version)
            t = clock.add("session_read", t)
            ctx.append(common_pb2.ROLE_USER, message, user_tokens)
            # round 2: push the user turn | render the prompt
            undo.pending_push = asyncio.ensure_future(self.ds.call(
                "session", self.ds.session.PushTurn, session_pb2.PushTurnRequest(
                    session_id=undo.session_id, role=common_pb2.ROLE_USER, content=message,
                    token_count=user_tokens, expected_version=ctx.version), owner=owner))
            prompt = await self._fit_and_render(ctx, budget, max_tokens)
            t = clock.add("template", t)
            pushed = await asyncio.shield(undo.pending_push)  # a cancel must not cut the push short
            undo.pushed_version, undo.pending_push = pushed.version, None
            clock.add("session_write", t)
            async for event in self._answer_and_store(owner, undo, pushed.turn.turn_id, pushed.version,
                                                      None, prompt, max_tokens, options, clock):
                yield event
        except BaseException:
            await self._undo(owner, undo)
            raise

    async def edit(self, owner: str, session_id: str, turn_id: str, message: str,
                   options: ChatOptions) -> AsyncIterator[ChatEvent]:
        """Fork below a user turn and chat there with a new message (the fork is the answer's session)."""
        self._check(message, options)
        if not turn_id:
            raise InvalidRequest("turn_id: empty")
        # The fork's id is chosen here, so a call cancelled (or cut off) while the fork is being
        # made can still delete it: the fork may have landed although its answer never came.
        fork_id, forked = uuid.uuid4().hex, False
        try:
            await self.ds.call("session", self.ds.session.ForkSession, session_pb2.ForkSessionRequest(
                session_id=session_id, before_turn_id=turn_id, metadata={"forked_from": session_id},
                new_session_id=fork_id), owner=owner)
            forked = True
            async for event in self._chat_in_fork(owner, fork_id, message, options):
                yield event
        except BaseException as exc:
            if forked or not isinstance(exc, _REFUSED):
                await self._undo(owner, _Undo(session_id=fork_id, created=True))
            raise

    async def _chat_in_fork(self, owner: str, fork_id: str, message: str,
                            options: ChatOptions) -> AsyncIterator[ChatEvent]:
        async for event in self.chat(owner, fork_id, "", message, options):
            if isinstance(event, SessionEvent):
                event = SessionEvent(event.session_id, True, event.user_turn_id, event.context_turns,
                                     event.context_truncated, event.prompt_tokens, event.prompt)
            yield event

    async def regenerate(self, owner: str, session_id: str,
                         options: ChatOptions) -> AsyncIterator[ChatEvent]:
        """Answer the last user turn again; the new answer replaces the last assistant turn."""
        max_tokens = self._check(None, options)
        clock = StageClock()
        budget = await self._budget(max_tokens, options)
        t = time.perf_counter()
        top = await self.ds.call("session", self.ds.session.PeekTurns, session_pb2.PeekTurnsRequest(
            session_id=session_id, n=2), owner=owner)
        turns = list(top.turns)
        replace: session_pb2.Turn | None = None
        if turns and turns[0].role == common_pb2.ROLE_ASSISTANT:
            replace = turns[0]
            turns = turns[1:]
        if not turns or turns[0].role != common_pb2.ROLE_USER:
            raise FailedPrecondition("nothing to regenerate: the session has no user turn to answer")
        # The answer being replaced is left out of the window, so its tokens are not budget.
        ctx = await self._read_context(owner, session_id, budget + (replace.token_count if replace else 0))
        if replace is not None and ctx.turn_ids and ctx.turn_ids[-1] == replace.turn_id:
            for column in (ctx.messages, ctx.tokens, ctx.turn_ids):
                column.pop()
        if ctx.version != top.version or not ctx.turn_ids or ctx.turn_ids[-1] != turns[0].turn_id:
            if ctx.version != top.version:
                raise VersionConflict(f"session {session_id} changed during regenerate; try again")
            raise InvalidRequest(self._too_long(await self.max_model_len(), max_tokens))
        t = clock.add("session_read", t)
        prompt = await self._fit_and_render(ctx, budget, max_tokens)
        clock.add("template", t)
        undo = _Undo(session_id=session_id)  # nothing is written before the answer is ready
        async for event in self._answer_and_store(owner, undo, turns[0].turn_id, top.version,
                                                  replace.turn_id if replace else None, prompt,
                                                  max_tokens, options, clock):
            yield event

    async def undo_last(self, owner: str, session_id: str) -> tuple[list[session_pb2.Turn], int]:
        """Pop the last user/assistant exchange (or a lone unanswered user turn)."""
        top = await self.ds.call("session", self.ds.session.PeekTurns, session_pb2.PeekTurnsRequest(
            session_id=session_id, n=2), owner=owner)
        turns = list(top.turns)
        if not turns:
            raise FailedPrecondition("nothing to undo: the session is empty")
        count = 2 if (len(turns) == 2 and turns[0].role == common_pb2.ROLE_ASSISTANT
                      and turns[1].role == common_pb2.ROLE_USER) else 1
        removed, version = [], top.version
        for _ in range(count):
            popped = await self.ds.call("session", self.ds.session.PopTurn, session_pb2.PopTurnRequest(
                session_id=session_id, expected_version=version), owner=owner)
            removed.append(popped.turn)
            version = popped.version
        return removed, version

    # -- the shared middle: context, template, generation, reward, store ------------------
    async def _answer_and_store(self, owner: str, undo: _Undo, user_turn_id: str, version: int,
                                replace_turn_id: str | None, prompt: _Prompt, max_tokens: int,
                                options: ChatOptions, clock: StageClock) -> AsyncIterator[ChatEvent]:
        yield SessionEvent(undo.session_id, undo.created, user_turn_id, prompt.context_turns,
                           prompt.truncated, len(prompt.ids), prompt.prompt if options.echo_prompt else "")
        answer = Answer(prompt_tokens=len(prompt.ids))
        async for delta in self._generate(prompt, max_tokens, options, answer, clock):
            yield delta
        if not answer.text:
            raise FailedPrecondition("the model produced an empty answer; regenerate")
        t = time.perf_counter()
        await self._reward(prompt, answer)
        t = clock.add("reward", t)
        stored = await self._store(owner, undo.session_id, version, replace_turn_id, answer)
        clock.add("session_write", t)
        undo.done()
        clock.seconds["total"] = time.perf_counter() - clock.start
        for stage, seconds in clock.seconds.items():
            self.metrics.stage.labels(stage).observe(seconds)
        yield FinalEvent(stored.turn.turn_id, answer.text, answer.reward_score, answer.candidates,
                         answer.prompt_tokens, answer.completion_tokens, dict(clock.seconds),
                         answer.finish_reason, stored.version)

    async def _budget(self, max_tokens: int, options: ChatOptions) -> int:
        """Tokens of context (system prompt + turns) the prompt may hold."""
        fixed, _ = await self.template_overhead()
        limit = await self.max_model_len()
        window = limit - max_tokens - fixed  # a larger budget could never be used
        budget = min(options.context_token_budget or window, window)
        if budget <= 0:
            raise InvalidRequest(self._too_long(limit, max_tokens))
        return budget

    @staticmethod
    def _too_long(limit: int, max_tokens: int) -> str:
        return (f"message: does not fit the context window ({limit} tokens) with max_tokens "
                f"{max_tokens}; shorten it or lower max_tokens")

    async def _read_context(self, owner: str, session_id: str, budget: int) -> _Context:
        """The newest turns that fit `budget` (GetContext), as a _Context."""
        reply = await self.ds.call("session", self.ds.session.GetContext, session_pb2.GetContextRequest(
            session_id=session_id, token_budget=budget), owner=owner)
        ctx = _Context(reply.system_prompt, reply.system_prompt_tokens, reply.version, reply.omitted_turns)
        for turn in reply.turns:
            ctx.append(turn.role, turn.content, turn.token_count, turn.turn_id)
        return ctx

    async def _fit_and_render(self, ctx: _Context, budget: int, max_tokens: int) -> _Prompt:
        """Keep the newest turns (the last, the one being answered, always) that fit the budget,
        render them; while the rendered prompt plus max_tokens still exceeds the model's length
        (template tokens, counts that differ from the rendering's), drop more of the oldest
        turns and render again: by the estimate, and at least one turn per round, so a
        conversation of any length converges on the exact rendered count."""
        limit = await self.max_model_len()
        _, per_message = await self.template_overhead()
        first = len(ctx.tokens) - newest_that_fit(ctx.tokens, budget - ctx.system_tokens)
        system = [common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content=ctx.system_prompt)] \
            if ctx.system_prompt else []
        while first < len(ctx.tokens):  # the message being answered always stays
            messages = system + ctx.messages[first:]
            text, ids = await self._render(messages)
            excess = len(ids) + max_tokens - limit
            if excess <= 0:
                return _Prompt(messages, text, ids, len(ctx.tokens) - first, ctx.omitted + first > 0)
            if first == len(ctx.tokens) - 1:
                break  # only the message being answered is left, and it does not fit
            drop = turns_to_drop(ctx.tokens[first:-1], excess, per_message)
            first += max(1, drop if drop is not None else len(ctx.tokens) - 1 - first)
        raise InvalidRequest(self._too_long(limit, max_tokens))

    async def _generate(self, prompt: _Prompt, max_tokens: int, options: ChatOptions, answer: Answer,
                        clock: StageClock) -> AsyncIterator[DeltaEvent]:
        temperature = self.config.default_temperature if options.temperature is None else options.temperature
        # Greedy best-of-n answers once: n greedy candidates would be n copies of one answer.
        n = 1 if temperature == 0 else max(1, options.best_of)
        sampling = generation_pb2.SamplingParams(
            n=n, max_tokens=max_tokens, min_tokens=1, stop=list(options.stop), temperature=temperature)
        for name in ("top_p", "top_k", "seed"):
            value = getattr(options, name)
            if value is not None:
                setattr(sampling, name, value)
        started = time.perf_counter()
        if n == 1:
            request = generation_pb2.GenerateStreamRequest(
                token_ids=common_pb2.TokenIds(ids=prompt.ids), sampling=sampling)
            first = True
            async for message in self.ds.generate_stream(request):
                if message.HasField("delta"):
                    if first:
                        clock.seconds["ttft"] = time.perf_counter() - started
                        first = False
                    yield DeltaEvent(message.delta.text, list(message.delta.token_ids))
                else:
                    choice = message.final.choices[0]
                    answer.text, answer.token_ids = choice.text, list(choice.token_ids)
                    answer.finish_reason = choice.finish_reason
                    answer.completion_tokens = message.final.usage.completion_tokens
            clock.add("generation", started)
            return
        reply = await self.ds.call("generation", self.ds.generation.Generate, generation_pb2.GenerateRequest(
            token_ids=common_pb2.TokenIds(ids=prompt.ids), sampling=sampling))
        clock.seconds["ttft"] = time.perf_counter() - started  # nothing streams before ranking
        clock.add("generation", started)
        self.metrics.best_of.labels(str(n)).inc()
        answer.completion_tokens = reply.usage.completion_tokens
        t = time.perf_counter()
        ranked = await self.ds.call("reward", self.ds.reward.Rank, reward_pb2.RankRequest(
            conversation=prompt.messages, candidates=[c.text for c in reply.choices],
            truncation=reward_pb2.TRUNCATION_AUTO))
        clock.add("reward", t)
        best = ranked.ranked[0].index
        answer.candidates = [Candidate(r.index, r.score, r.text, len(reply.choices[r.index].token_ids),
                                       r.index == best) for r in sorted(ranked.ranked, key=lambda r: r.index)]
        winner = reply.choices[best]
        answer.text, answer.token_ids = winner.text, list(winner.token_ids)
        answer.finish_reason = winner.finish_reason
        answer.reward_score = ranked.ranked[0].score
        yield DeltaEvent(winner.text, list(winner.token_ids))

    async def _reward(self, prompt: _Prompt, answer: Answer) -> None:
        if answer.candidates:
            return  # best-of-n: Rank already scored every candidate
        # The reward model's window may be shorter than the generator's: the reward service fits
        # the conversation to it on the exact rendered length (oldest messages first).
        reply = await self.ds.call("reward", self.ds.reward.Score, reward_pb2.ScoreRequest(
            item=reward_pb2.ScoreItem(conversation=prompt.messages, response=answer.text),
            truncation=reward_pb2.TRUNCATION_AUTO))
        answer.reward_score = reply.score

    async def _store(self, owner: str, session_id: str, version: int, replace_turn_id: str | None,
                     answer: Answer) -> session_pb2.PushTurnResponse:
        tokens = len(answer.token_ids)  # the generated ids are the answer's tokens: no recount
        if replace_turn_id:
            popped = await self.ds.call("session", self.ds.session.PopTurn, session_pb2.PopTurnRequest(
                session_id=session_id, expected_version=version), owner=owner)
            version = popped.version
        metadata = {"reward_score": repr(answer.reward_score), "finish_reason":
                    common_pb2.FinishReason.Name(answer.finish_reason)}
        if answer.candidates:
            metadata["best_of"] = str(len(answer.candidates))
        return await self.ds.call("session", self.ds.session.PushTurn, session_pb2.PushTurnRequest(
            session_id=session_id, role=common_pb2.ROLE_ASSISTANT, content=answer.text, token_count=tokens,
            metadata=metadata, expected_version=version), owner=owner)

    async def _undo(self, owner: str, undo: _Undo) -> None:
        """Undo this call's session writes; shielded so a second cancellation cannot cut it short."""
        if not undo.created and undo.pushed_version is None and undo.pending_push is None:
            return

        async def run() -> None:
            timeout = self.config.rollback_timeout_seconds
            if undo.pending_push is not None and undo.pushed_version is None:
                try:  # the push may have landed although this call failed or was cancelled
                    undo.pushed_version = (await asyncio.wait_for(undo.pending_push, timeout)).version
                except (Exception, asyncio.CancelledError):
                    pass  # it did not land: nothing to pop
            if not undo.created and undo.pushed_version is None:
                return
            if undo.created:
                await self.ds.call("session", self.ds.session.DeleteSession, session_pb2.DeleteSessionRequest(
                    session_id=undo.session_id), owner=owner, timeout=timeout)
            else:
                await self.ds.call("session", self.ds.session.PopTurn, session_pb2.PopTurnRequest(
                    session_id=undo.session_id, expected_version=undo.pushed_version), owner=owner,
                    timeout=timeout)

        try:
            await asyncio.shield(run())
            self.metrics.rollbacks.labels("ok").inc()
        except BaseException as exc:
            self.metrics.rollbacks.labels("failed").inc()
            log.warning("could not undo the session writes of a failed call on %s: %s",
                        undo.session_id, exc)


async def _both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Await two calls side by side; both finish before the first failure (in argument order) is
    raised, so nothing is left running unobserved."""
    a, b = await asyncio.gather(first, second, return_exceptions=True)
    if isinstance(a, BaseException):
        raise a
    if isinstance(b, BaseException):
        raise b
    return a, b
