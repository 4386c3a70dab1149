"""ChatOrchestrator: one Chat = session -> tokenizer -> generation -> reward -> session.

Consistency: a call that fails or is cancelled at any stage undoes its own session writes
(pops its user turn with the version it produced, or deletes the session it created), so the
session is exactly as it was before the call. Cancelling the call cancels the downstream
generation stream, which aborts the request in the engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from chatstack.core.errors import FailedPrecondition, InvalidRequest
from chatstack.gateway.config import GatewayConfig
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
ROLE_PB = {"system": common_pb2.ROLE_SYSTEM, "user": common_pb2.ROLE_USER,
           "assistant": common_pb2.ROLE_ASSISTANT}


@dataclass
class _Undo:
    """The session writes of one call so far, to undo on failure."""

    session_id: str = ""
    created: bool = False
    pushed_version: int | None = None  # version right after our user-turn push


@dataclass(frozen=True)
class _Prompt:
    """The rendered context sent to the model."""

    messages: list[common_pb2.ChatMessage]
    message_tokens: list[int]  # content tokens of each message
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
        self._reward_max_len: int | None = None
        self._overhead: tuple[int, int] | None = None  # (fixed, per message)

    # -- cached model facts ----------------------------------------------------------------
    async def max_model_len(self) -> int:
        """The generation model's context length (asked once)."""
        if self._max_model_len is None:
            info = await self.ds.call("generation", self.ds.generation.GetModelInfo,
                                      generation_pb2.GetModelInfoRequest())
            self._max_model_len = int(info.max_model_len)
        return self._max_model_len

    async def reward_max_len(self) -> int:
        """The reward model's context length (asked once)."""
        if self._reward_max_len is None:
            info = await self.ds.call("reward", self.ds.reward.GetModelInfo,
                                      reward_pb2.RewardServiceGetModelInfoRequest())
            self._reward_max_len = int(info.max_model_len)
        return self._reward_max_len

    async def reward_conversation(self, prompt: _Prompt, answer_tokens: int) -> list[common_pb2.ChatMessage]:
        """The newest messages that, with the answer, fit the reward model's window (it may be
        shorter than the generator's): older turns are dropped first, the system prompt last."""
        limit = await self.reward_max_len()
        fixed, per_message = await self.template_overhead()
        messages, tokens = list(prompt.messages), list(prompt.message_tokens)
        total = fixed + sum(tokens) + per_message * (len(messages) + 1) + answer_tokens
        has_system = bool(messages) and messages[0].role == common_pb2.ROLE_SYSTEM
        while total > limit and len(messages) > 1:
            drop = 1 if has_system and len(messages) > 2 else 0
            total -= tokens.pop(drop) + per_message
            messages.pop(drop)
            has_system = has_system and drop == 1
        return messages

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

    async def create_session(self, owner: str, system_prompt: str,
                             metadata: dict[str, str] | None = None) -> session_pb2.Session:
        """A new session; the system prompt's tokens are counted by the tokenizer."""
        tokens = (await self.count([system_prompt]))[0] if system_prompt else 0
        reply = await self.ds.call("session", self.ds.session.CreateSession,
                                   session_pb2.CreateSessionRequest(
                                       system_prompt=system_prompt, system_prompt_tokens=tokens,
                                       metadata=metadata or {}), owner=owner)
        return reply.session

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
            t = time.perf_counter()
            if not session_id:
                undo.session_id = (await self.create_session(owner, system_prompt)).session_id
                undo.created = True
            t = clock.add("session_read", t)
            (user_tokens,) = await self.count([message])
            t = clock.add("template", t)
            pushed = await self.ds.call("session", self.ds.session.PushTurn, session_pb2.PushTurnRequest(
                session_id=undo.session_id, role=common_pb2.ROLE_USER, content=message,
                token_count=user_tokens), owner=owner)
            undo.pushed_version = pushed.version
            clock.add("session_read", t)
            async for event in self._answer_and_store(owner, undo, pushed.turn.turn_id, pushed.version,
                                                      None, max_tokens, options, clock):
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
        fork = await self.ds.call("session", self.ds.session.ForkSession, session_pb2.ForkSessionRequest(
            session_id=session_id, before_turn_id=turn_id, metadata={"forked_from": session_id}),
            owner=owner)
        try:
            async for event in self._chat_in_fork(owner, fork.session.session_id, message, options):
                yield event
        except BaseException:
            await self._undo(owner, _Undo(session_id=fork.session.session_id, created=True))
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
        t = time.perf_counter()
        top = await self.ds.call("session", self.ds.session.PeekTurns, session_pb2.PeekTurnsRequest(
            session_id=session_id, n=2), owner=owner)
        clock.add("session_read", t)
        turns = list(top.turns)
        replace: str | None = None
        if turns and turns[0].role == common_pb2.ROLE_ASSISTANT:
            replace = turns[0].turn_id
            turns = turns[1:]
        if not turns or turns[0].role != common_pb2.ROLE_USER:
            raise FailedPrecondition("nothing to regenerate: the session has no user turn to answer")
        undo = _Undo(session_id=session_id)  # nothing is written before the answer is ready
        async for event in self._answer_and_store(owner, undo, turns[0].turn_id, top.version, replace,
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
                                replace_turn_id: str | None, max_tokens: int, options: ChatOptions,
                                clock: StageClock) -> AsyncIterator[ChatEvent]:
        prompt = await self._context_prompt(owner, undo.session_id, user_turn_id, replace_turn_id,
                                            max_tokens, options, clock)
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
        undo.pushed_version = None  # the call succeeded: nothing to undo any more
        undo.created = False
        clock.seconds["total"] = time.perf_counter() - clock.start
        for stage, seconds in clock.seconds.items():
            self.metrics.stage.labels(stage).observe(seconds)
        yield FinalEvent(stored.turn.turn_id, answer.text, answer.reward_score, answer.candidates,
                         answer.prompt_tokens, answer.completion_tokens, dict(clock.seconds),
                         answer.finish_reason, stored.version)

    async def _context_prompt(self, owner: str, session_id: str, user_turn_id: str,
                              replace_turn_id: str | None, max_tokens: int, options: ChatOptions,
                              clock: StageClock) -> _Prompt:
        limit = await self.max_model_len()
        fixed, per_message = await self.template_overhead()
        budget = options.context_token_budget or (limit - max_tokens - fixed)
        for _ in range(4):
            if budget <= 0:
                break
            t = time.perf_counter()
            ctx = await self.ds.call("session", self.ds.session.GetContext, session_pb2.GetContextRequest(
                session_id=session_id, token_budget=budget), owner=owner)
            t = clock.add("session_read", t)
            turns = [turn for turn in ctx.turns if turn.turn_id != replace_turn_id]
            if not turns or turns[-1].turn_id != user_turn_id:
                break  # the message itself does not fit
            messages = [common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content=ctx.system_prompt)] \
                if ctx.system_prompt else []
            tokens = [ctx.system_prompt_tokens] if ctx.system_prompt else []
            messages += [common_pb2.ChatMessage(role=turn.role, content=turn.content) for turn in turns]
            tokens += [turn.token_count for turn in turns]
            text, ids = await self._render(messages)
            clock.add("template", t)
            excess = len(ids) + max_tokens - limit
            if excess <= 0:
                return _Prompt(messages, tokens, text, ids, len(turns), ctx.omitted_turns > 0)
            budget -= excess + per_message
        raise InvalidRequest(f"message: does not fit the context window ({limit} tokens) with "
                             f"max_tokens {max_tokens}; shorten it or lower max_tokens")

    async def _generate(self, prompt: _Prompt, max_tokens: int, options: ChatOptions, answer: Answer,
                        clock: StageClock) -> AsyncIterator[DeltaEvent]:
        n = max(1, options.best_of)
        sampling = generation_pb2.SamplingParams(
            n=n, max_tokens=max_tokens, min_tokens=1, stop=list(options.stop),
            temperature=(self.config.default_temperature if options.temperature is None
                         else options.temperature))
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
        longest = max(len(c.token_ids) for c in reply.choices)
        ranked = await self.ds.call("reward", self.ds.reward.Rank, reward_pb2.RankRequest(
            conversation=await self.reward_conversation(prompt, longest),
            candidates=[c.text for c in reply.choices]))
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
        conversation = await self.reward_conversation(prompt, len(answer.token_ids))
        reply = await self.ds.call("reward", self.ds.reward.Score, reward_pb2.ScoreRequest(
            item=reward_pb2.ScoreItem(conversation=conversation, response=answer.text)))
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
        if not undo.created and undo.pushed_version is None:
            return

        async def run() -> None:
            timeout = self.config.rollback_timeout_seconds
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
