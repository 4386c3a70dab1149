"""ChatDataPlane: the chat flows, transport-free (the gRPC servicer is one adapter over it).

One Chat = session -> tokenizer -> generation -> reward -> session. Latency: the calls before
generation run in two rounds, each two calls side by side: (1) count the message's tokens and read
the session's context window (before the push), then (2) push the user turn (at the version read,
so a concurrent change is ABORTED rather than answered from a stale window) and render the chat
template.

Consistency: a call that fails or is cancelled at any stage undoes its own session writes (pops
its user turn with the version it produced, or deletes the session or fork it created: their ids
are chosen here, before the call that creates them), so the session is exactly as it was before
the call. Cancelling the call cancels the downstream generation stream, which aborts the request
in the engine.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar

from chatstack.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    Unauthenticated,
    VersionConflict,
)
from chatstack.gateway.answering import Answerer
from chatstack.gateway.clients import Backends, SessionClient
from chatstack.gateway.config import GatewayConfig
from chatstack.gateway.deferred_scoring import DeferredScorer
from chatstack.gateway.downstream import StageClock
from chatstack.gateway.metrics import GatewayMetrics
from chatstack.gateway.model import Answer, ChatEvent, ChatOptions, FinalEvent, SessionEvent
from chatstack.gateway.prompting import ChatContext, Prompt, PromptBuilder, too_long
from chatstack.gateway.rollback import Undo, undo_writes
from chatstack.v1 import common_pb2, session_pb2

A = TypeVar("A")
B = TypeVar("B")
# A session call that failed with one of these certainly changed nothing.
REFUSED = (InvalidRequest, NotFound, FailedPrecondition, VersionConflict, AlreadyExists, Unauthenticated)


@dataclass
class Exchange:
    """One answer being made: where it goes and what it answers."""

    sessions: SessionClient
    undo: Undo
    user_turn_id: str
    version: int  # the session's version the answer is stored at
    prompt: Prompt
    max_tokens: int
    options: ChatOptions
    clock: StageClock
    replace_turn_id: str | None = None  # the assistant turn a regenerate replaces


class ChatDataPlane:
    """The chat flows over typed backend clients (see module docstring)."""

    def __init__(self, config: GatewayConfig, backends: Backends, metrics: GatewayMetrics) -> None:
        self.config = config
        self.backends = backends
        self.metrics = metrics
        self.prompts = PromptBuilder(backends.tokenizer, backends.generation)
        self.answerer = Answerer(config, backends.generation, backends.reward, metrics)
        self.scorer = DeferredScorer(backends.reward, metrics, config.max_pending_scores,
                                     config.deferred_score_timeout_seconds)

    async def close(self) -> None:
        """Finish (or, after the grace period, cancel) pending scorings; close the channels."""
        await self.scorer.close(self.config.grace_seconds)
        await self.backends.close()

    def check(self, message: str | None, options: ChatOptions) -> int:
        """The call's limits (before any work); returns the effective max_tokens."""
        c = self.config
        if message is not None:
            if not message.strip():
                raise InvalidRequest("message: empty")
            if len(message) > c.max_message_chars:
                raise InvalidRequest(f"message: {len(message)} characters exceed the limit of "
                                     f"{c.max_message_chars}")
        max_tokens = options.max_tokens or c.default_max_tokens
        if max_tokens > c.max_tokens_limit:
            raise InvalidRequest(f"options.max_tokens: {max_tokens} exceeds the limit of "
                                 f"{c.max_tokens_limit}")
        if options.best_of > c.max_best_of:
            raise InvalidRequest(f"options.best_of: {options.best_of} exceeds the limit of {c.max_best_of}")
        return max_tokens

    # -- sessions -------------------------------------------------------------------------------
    async def create_session(self, owner: str, system_prompt: str, metadata: dict[str, str] | None = None,
                             also_count: str | None = None, session_id: str = "",
                             ) -> tuple[session_pb2.Session, int]:
        """A new session (with `session_id`, or one the session service picks); the system
        prompt's tokens are counted in the same tokenizer call as `also_count` (a Chat's first
        message), whose count is returned (0 if None)."""
        texts = ([also_count] if also_count is not None else []) + ([system_prompt] if system_prompt else [])
        counts = await self.backends.tokenizer.count(texts) if texts else []
        session = await self.backends.sessions(owner).create(session_pb2.CreateSessionRequest(
            session_id=session_id, system_prompt=system_prompt,
            system_prompt_tokens=counts[-1] if system_prompt else 0, metadata=metadata or {}))
        return session, (counts[0] if also_count is not None else 0)

    def sessions(self, owner: str) -> SessionClient:
        """The session service as `owner` (GetSession, ListSessions, DeleteSession pass through)."""
        return self.backends.sessions(owner)

    async def history(self, owner: str, session_id: str, page_size: int,
                      page_token: str) -> tuple[str, session_pb2.ListTurnsResponse]:
        """The system prompt and a page of turns, oldest first."""
        sessions = self.backends.sessions(owner)
        session = await sessions.get(session_id)
        return session.system_prompt, await sessions.turns(session_id, page_size, page_token)

    # -- flows ----------------------------------------------------------------------------------
    async def chat(self, owner: str, session_id: str, system_prompt: str, message: str,
                   options: ChatOptions) -> AsyncIterator[ChatEvent]:
        """Push the user message, answer it, store the answer; undo everything on failure."""
        max_tokens = self.check(message, options)
        clock, sessions = StageClock(), self.backends.sessions(owner)
        undo = Undo(session_id=session_id)
        try:
            budget = await self.prompts.budget(max_tokens, options)
            t = time.perf_counter()
            if session_id:  # round 1: count the message | read the window
                (user_tokens,), ctx = await _both(self.backends.tokenizer.count([message]),
                                                  self.prompts.read(sessions, session_id, budget))
            else:  # a new session holds only its system prompt: nothing to read
                undo.session_id, undo.created = uuid.uuid4().hex, True
                session, user_tokens = await self.create_session(
                    owner, system_prompt, also_count=message, session_id=undo.session_id)
                ctx = ChatContext(session.system_prompt, session.system_prompt_tokens, session.version)
            t = clock.add("session_read", t)
            ctx.append(common_pb2.ROLE_USER, message, user_tokens)
            # round 2: push the user turn | render the prompt
            undo.pending_push = asyncio.ensure_future(sessions.push(session_pb2.PushTurnRequest(
                session_id=undo.session_id, role=common_pb2.ROLE_USER, content=message,
                token_count=user_tokens, expected_version=ctx.version)))
            prompt = await self.prompts.fit_and_render(ctx, budget, max_tokens)
            t = clock.add("template", t)
            pushed = await asyncio.shield(undo.pending_push)  # a cancel must not cut the push short
            undo.pushed_version, undo.pending_push = pushed.version, None
            clock.add("session_write", t)
            exchange = Exchange(sessions, undo, pushed.turn.turn_id, pushed.version, prompt, max_tokens,
                                options, clock)
            async for event in self._answer_and_store(exchange):
                yield event
        except BaseException:
            await undo_writes(sessions, undo, self.config.rollback_timeout_seconds, self.metrics)
            raise

    async def edit(self, owner: str, session_id: str, turn_id: str, message: str,
                   options: ChatOptions) -> AsyncIterator[ChatEvent]:
        """Fork below a user turn and chat there with a new message (the fork is the answer's session)."""
        self.check(message, options)
        if not turn_id:
            raise InvalidRequest("turn_id: empty")
        sessions = self.backends.sessions(owner)
        fork_id, forked = uuid.uuid4().hex, False
        try:
            await sessions.fork(session_pb2.ForkSessionRequest(
                session_id=session_id, before_turn_id=turn_id, metadata={"forked_from": session_id},
                new_session_id=fork_id))
            forked = True
            async for event in self.chat(owner, fork_id, "", message, options):
                if isinstance(event, SessionEvent):
                    event = SessionEvent(event.session_id, True, event.user_turn_id, event.context_turns,
                                         event.context_truncated, event.prompt_tokens, event.prompt)
                yield event
        except BaseException as exc:
            if forked or not isinstance(exc, REFUSED):  # the fork may have landed: delete it
                await undo_writes(sessions, Undo(session_id=fork_id, created=True),
                                  self.config.rollback_timeout_seconds, self.metrics)
            raise

    async def regenerate(self, owner: str, session_id: str, options: ChatOptions) -> AsyncIterator[ChatEvent]:
        """Answer the last user turn again; the new answer replaces the last assistant turn."""
        max_tokens = self.check(None, options)
        clock, sessions = StageClock(), self.backends.sessions(owner)
        budget = await self.prompts.budget(max_tokens, options)
        t = time.perf_counter()
        top = await sessions.peek(session_id, 2)
        turns = list(top.turns)
        replace = turns.pop(0) if turns and turns[0].role == common_pb2.ROLE_ASSISTANT else None
        if not turns or turns[0].role != common_pb2.ROLE_USER:
            raise FailedPrecondition("nothing to regenerate: the session has no user turn to answer")
        # The answer being replaced is left out of the window, so its tokens are not budget.
        ctx = await self.prompts.read(sessions, session_id, budget + (replace.token_count if replace else 0))
        if replace is not None and ctx.turn_ids and ctx.turn_ids[-1] == replace.turn_id:
            ctx.drop_top()
        if ctx.version != top.version:
            raise VersionConflict(f"session {session_id} changed during regenerate; try again")
        if not ctx.turn_ids or ctx.turn_ids[-1] != turns[0].turn_id:
            raise InvalidRequest(too_long(await self.backends.generation.max_model_len(), max_tokens))
        t = clock.add("session_read", t)
        prompt = await self.prompts.fit_and_render(ctx, budget, max_tokens)
        clock.add("template", t)
        # Nothing is written before the answer is ready: nothing to undo.
        exchange = Exchange(sessions, Undo(session_id=session_id), turns[0].turn_id, top.version, prompt,
                            max_tokens, options, clock, replace.turn_id if replace else None)
        async for event in self._answer_and_store(exchange):
            yield event

    async def undo_last(self, owner: str, session_id: str) -> tuple[list[session_pb2.Turn], int]:
        """Pop the last user/assistant exchange (or a lone unanswered user turn)."""
        sessions = self.backends.sessions(owner)
        top = await sessions.peek(session_id, 2)
        turns = list(top.turns)
        if not turns:
            raise FailedPrecondition("nothing to undo: the session is empty")
        count = 2 if (len(turns) == 2 and turns[0].role == common_pb2.ROLE_ASSISTANT
                      and turns[1].role == common_pb2.ROLE_USER) else 1
        removed, version = [], top.version
        for _ in range(count):
            popped = await sessions.pop(session_id, version)
            removed.append(popped.turn)
            version = popped.version
        return removed, version

    # -- the shared end: answer, store ----------------------------------------------------------
    async def _answer_and_store(self, ex: Exchange) -> AsyncIterator[ChatEvent]:
        prompt, clock = ex.prompt, ex.clock
        yield SessionEvent(ex.undo.session_id, ex.undo.created, ex.user_turn_id, prompt.context_turns,
                           prompt.truncated, len(prompt.ids), prompt.text if ex.options.echo_prompt else "")
        answer: Answer | None = None
        async for item in self.answerer.answer(prompt, ex.max_tokens, ex.options, clock):
            if isinstance(item, Answer):
                answer = item
            else:
                yield item
        if answer is None or not answer.text:
            raise FailedPrecondition("the model produced an empty answer; regenerate")
        t = time.perf_counter()
        stored = await self._store(ex, answer)
        clock.add("session_write", t)
        ex.undo.done()
        if answer.reward_status == "pending" and not self.scorer.submit(
                ex.sessions, ex.undo.session_id, stored.turn.turn_id, prompt.messages, answer.text):
            answer.reward_status = "off"
        clock.seconds["total"] = time.perf_counter() - clock.start
        for stage, seconds in clock.seconds.items():
            self.metrics.stage.labels(stage).observe(seconds)
        yield FinalEvent(stored.turn.turn_id, answer.text, answer.reward_score, answer.candidates,
                         answer.prompt_tokens, answer.completion_tokens, dict(clock.seconds),
                         answer.finish_reason, stored.version, answer.reward_status)

    @staticmethod
    async def _store(ex: Exchange, answer: Answer) -> session_pb2.PushTurnResponse:
        version = ex.version
        if ex.replace_turn_id:
            version = (await ex.sessions.pop(ex.undo.session_id, version)).version
        metadata = {"finish_reason": common_pb2.FinishReason.Name(answer.finish_reason)}
        if answer.reward_status == "scored":
            metadata["reward_score"] = repr(answer.reward_score)
        if answer.candidates:
            metadata["best_of"] = str(len(answer.candidates))
        return await ex.sessions.push(session_pb2.PushTurnRequest(
            session_id=ex.undo.session_id, role=common_pb2.ROLE_ASSISTANT, content=answer.text,
            token_count=len(answer.token_ids),  # the generated ids are the answer's tokens: no recount
            metadata=metadata, expected_version=version))


async def _both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Await two calls side by side; both finish before the first failure (in argument order) is
    raised, so nothing is left running unobserved."""
    a, b = await asyncio.gather(first, second, return_exceptions=True)
    if isinstance(a, BaseException):
        raise a
    if isinstance(b, BaseException):
        raise b
    return a, b
