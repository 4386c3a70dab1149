"""ChatDataPlane: the chat flows, transport-free (the gRPC servicer is one adapter over it).

One Chat = session -> tokenizer -> generation -> reward -> session. Latency: one call to each
service before generation, in sequence: read the session's context window, then render the chat
template (the same tokenizer call counts the new message). The user turn is then pushed (at the
version read, so a concurrent change is ABORTED rather than answered from a stale window) while
the engine already works on the prompt; the first event, which names the stored user turn, waits
for the push, the deltas follow. A new session is created the same way, beside generation.

Consistency: an exchange is stored whole or not at all. The user turn is pushed *pending*
(invisible to reads, other changes of the session ABORTED meanwhile) and committed together with
the answer in one script; a regenerate replaces the old answer in one script; a new session or an
edit's fork is created pending (unlisted, expiring unless an answer is committed into it). A call
that fails or is cancelled takes its writes back (`chatstack.gateway.rollback`); when even that
cannot reach the store, what it left stays invisible and is reaped when its lease ends. Cancelling
the call cancels the downstream generation stream, which aborts the request in the engine.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import replace

from chatstack.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    Unauthenticated,
    VersionConflict,
)
from chatstack.core.roles import ASSISTANT, TOOL, USER
from chatstack.gateway.answering import Answerer, InputVerdict, PromptIds, cancelled
from chatstack.gateway.clients import Backends, SessionClient
from chatstack.gateway.config import GatewayConfig
from chatstack.gateway.conversations import Conversations
from chatstack.gateway.deferred_scoring import DeferredScorer
from chatstack.gateway.exchange import Exchange
from chatstack.gateway.metrics import GatewayMetrics
from chatstack.gateway.model import Answer, ChatEvent, DeltaEvent, FinalEvent, SessionEvent
from chatstack.gateway.plan import Plan
from chatstack.gateway.preferences import EditedTurn, PreferenceRecorder
from chatstack.gateway.prompting import ChatContext, Prompt, PromptBuilder, too_long
from chatstack.gateway.rollback import Rollback, lease_ms, roll_back
from chatstack.gateway.session_records import AnswerMeta, Fork, Message, TurnPush
from chatstack.gateway.stage_clock import StageClock
from chatstack.session.model import NewSession, PushResult, Turn

# A session call that failed with one of these certainly changed nothing.
REFUSED = (InvalidRequest, NotFound, FailedPrecondition, VersionConflict, AlreadyExists, Unauthenticated)


class ChatDataPlane:
    """The chat flows over typed backend clients (see module docstring)."""

    def __init__(self, config: GatewayConfig, backends: Backends, metrics: GatewayMetrics, answerer: Answerer,
                 conversations: Conversations, preferences: PreferenceRecorder) -> None:
        self.config = config
        self.backends = backends
        self.metrics = metrics
        self.prompts = PromptBuilder(backends.tokenizer, backends.generation)
        self.answerer = answerer
        self.scorer = DeferredScorer(backends.reward, metrics, config.max_pending_scores,
                                     config.deferred_score_timeout_seconds)
        self.conversations = conversations
        self.preferences = preferences

    async def close(self, grace_seconds: float) -> None:
        """Finish (or, after the grace period, cancel) pending scorings."""
        await self.scorer.close(grace_seconds)

    def check(self, message: Message, field: str = "message") -> None:
        """The message's limits (before any work; the plan has checked the options): a user's
        message, or a tool's result naming the call it answers."""
        if message.role == TOOL and not message.tool_call_id:
            raise InvalidRequest(f"{field}: a tool result names the call it answers (tool_call_id)")
        if not message.content.strip():
            raise InvalidRequest(f"{field}: empty")
        if len(message.content) > self.config.max_message_chars:
            raise InvalidRequest(f"{field}: {len(message.content)} characters exceed the limit of "
                                 f"{self.config.max_message_chars}")

    # -- flows ----------------------------------------------------------------------------------
    def chat(self, owner: str, session_id: str, system_prompt: str, messages: Sequence[Message],
             plan: Plan, instructions: str | None = None) -> AsyncGenerator[ChatEvent]:
        """Read the window, render the prompt, answer it while the new turns (a user's message,
        or the results of the last answer's tool calls) are stored, store the answer; undo
        everything on failure. `system_prompt` is a new session's; `instructions` replace an
        existing session's for this call only. The turns are checked at once (a caller that
        names them otherwise checks them first: `check`)."""
        self.check_turns(messages)
        for message in messages:
            self.check(message)
        return self._chat(owner, session_id, system_prompt, messages, plan, instructions)

    def check_turns(self, messages: Sequence[Message], field: str = "message") -> None:
        """A user's message, or up to max_tool_results tools' results (each message is checked
        by `check`)."""
        tools = [m for m in messages if m.role == TOOL]
        if not messages or (tools and len(tools) != len(messages)) or (not tools and len(messages) > 1):
            raise InvalidRequest(f"{field}: one user message, or the results of tool calls")
        if len(tools) > self.config.max_tool_results:
            raise InvalidRequest(f"{field}: {len(tools)} tool results exceed the limit of "
                                 f"{self.config.max_tool_results}")

    async def _chat(self, owner: str, session_id: str, system_prompt: str, messages: Sequence[Message],
                    plan: Plan, instructions: str | None) -> AsyncGenerator[ChatEvent]:
        clock, sessions = StageClock(), self.backends.sessions(owner)
        rollback = Rollback(session_id=session_id)
        verdict: InputVerdict = None
        try:
            budget = await self.prompts.budget(plan)
            t = time.perf_counter()
            if session_id:
                ctx = await self.prompts.read(sessions, session_id, budget)
                if instructions is not None:
                    ctx.system_prompt, ctx.system_tokens = instructions, None  # counted in the render
            else:  # a new session holds only its system prompt: nothing to read
                rollback.session_id = uuid.uuid4().hex  # chosen here, so a cancelled create is deleted
                ctx = ChatContext(system_prompt, None, 0)
            t = clock.add("session_read", t)
            _check_answers_open_calls(ctx, [m.tool_call_id for m in messages if m.role == TOOL])
            for message in messages:
                ctx.append(message, None)
            # The safety stage reads the input while it is rendered, and on beside the prefill.
            verdict = self.answerer.safety.start_input(ctx.messages)
            prompt = await self.prompts.fit_and_render(ctx, budget, plan)  # counts the new turns too
            clock.add("template", t)
            if prompt.truncated and not plan.options.truncate:
                raise InvalidRequest(
                    f"input: the conversation does not fit the context window with max_tokens "
                    f"{plan.max_tokens} "
                    f"({prompt.context_turns} newest turns would); truncation 'auto' lets the oldest leave")
            # The new turns are stored (at the version read, so a concurrent change is ABORTED
            # rather than answered from a stale window) while the engine starts on the prompt.
            rollback.pending_push = asyncio.ensure_future(
                self._store_new_turns(sessions, rollback, ctx, prompt, create=not session_id,
                                      lease=lease_ms(self.config)))
            exchange = Exchange(sessions, rollback, prompt, plan, clock, input_check=verdict)
            async with aclosing(self._answer_and_store(exchange)) as source:
                async for event in source:
                    yield event
        except BaseException:
            await roll_back(sessions, rollback, self.config.rollback_timeout_seconds, self.metrics)
            raise
        finally:
            if verdict is not None and not verdict.done():
                await cancelled(verdict)

    @staticmethod
    async def _store_new_turns(sessions: SessionClient, rollback: Rollback, ctx: ChatContext, prompt: Prompt,
                               create: bool, lease: int) -> tuple[str, PushResult]:
        """Push the turns being answered (ctx's top ones) pending, as one group, at the version
        read, creating the session (pending too) with ctx's system prompt first when `create`.
        Returns the first turn's id and the last push (the group's top, recorded in `rollback`
        as each push lands)."""
        version = ctx.version
        if create:
            rollback.created = True  # set before the call: a create cut short may still land
            session = await sessions.create(NewSession(rollback.session_id, ctx.system_prompt,
                                                       prompt.system_tokens, pending_ms=lease))
            version = session.version
        first, pushed = "", None
        for message, tokens in zip(ctx.messages[-len(prompt.new_tokens):], prompt.new_tokens, strict=True):
            pushed = await sessions.push(TurnPush(
                rollback.session_id, message.role, message.content, tokens, expected_version=version,
                pending_ms=lease, tool_call_id=message.tool_call_id,
                join_pending_turn_id=rollback.pending_turn_id))
            rollback.pending_turn_id, version = pushed.turn.turn_id, pushed.version
            first = first or pushed.turn.turn_id
        assert pushed is not None  # at least the message being answered
        return first, pushed

    async def edit(self, owner: str, session_id: str, turn_id: str, message: str,
                   plan: Plan, instructions: str | None = None) -> AsyncGenerator[ChatEvent]:
        """Fork below a user turn and chat there with a new message (the fork is the answer's session)."""
        self.check(Message(USER, message))
        if not turn_id:
            raise InvalidRequest("turn_id: empty")
        sessions = self.backends.sessions(owner)
        fork_id, forked = uuid.uuid4().hex, False
        try:
            # pending until the answer is stored
            await sessions.fork(Fork(session_id, turn_id, fork_id, {"forked_from": session_id},
                                     lease_ms(self.config)))
            forked = True
            async with aclosing(self._chat(owner, fork_id, "", [Message(USER, message)], plan,
                                           instructions)) as source:
                async for event in source:
                    if isinstance(event, SessionEvent):
                        event = replace(event, created=True)
                    elif isinstance(event, FinalEvent):
                        self.preferences.edited(sessions, EditedTurn(session_id, turn_id, message, fork_id),
                                                event.assistant_turn_id, plan)
                    yield event
        except BaseException as exc:
            if forked or not isinstance(exc, REFUSED):  # the fork may have landed: delete it
                await roll_back(sessions, Rollback(session_id=fork_id, created=True),
                                self.config.rollback_timeout_seconds, self.metrics)
            raise

    async def regenerate(self, owner: str, session_id: str,
                         plan: Plan) -> AsyncGenerator[ChatEvent]:
        """Answer the last user turn again; the new answer replaces the last assistant turn."""
        clock, sessions = StageClock(), self.backends.sessions(owner)
        budget = await self.prompts.budget(plan)
        t = time.perf_counter()
        top = await sessions.peek(session_id, 2)
        turns = list(top.turns)
        replaced = turns.pop(0) if turns and turns[0].role == ASSISTANT else None
        if not turns or turns[0].role not in (USER, TOOL):
            raise FailedPrecondition("nothing to regenerate: the session has no user turn (or tool result) "
                                     "to answer")
        # The answer being replaced is left out of the window, so its tokens are not budget.
        extra = replaced.token_count if replaced else 0
        ctx = await self.prompts.read(sessions, session_id, budget + extra, keep_top_exchange=True)
        if replaced is not None and ctx.turn_ids and ctx.turn_ids[-1] == replaced.turn_id:
            ctx.drop_top()
        if ctx.version != top.version:
            raise VersionConflict(f"session {session_id} changed during regenerate; try again")
        if not ctx.turn_ids or ctx.turn_ids[-1] != turns[0].turn_id:
            raise InvalidRequest(too_long(await self.backends.generation.max_model_len(), plan.max_tokens))
        t = clock.add("session_read", t)
        prompt = await self.prompts.fit_and_render(ctx, budget, plan)
        clock.add("template", t)
        # Nothing is written before the answer is ready, which replaces the old one in one step.
        exchange = Exchange(sessions, Rollback(session_id=session_id), prompt, plan, clock,
                            user_turn_id=turns[0].turn_id, version=top.version, replaced=replaced)
        async with aclosing(self._answer_and_store(exchange)) as source:
            async for event in source:
                yield event

    async def undo(self, owner: str, session_id: str,
                   top_turn_id: str = "") -> tuple[list[Turn], int]:
        """Remove the last exchange (see Conversations.undo_last); a preference signal."""
        removed, version = await self.conversations.undo_last(owner, session_id, top_turn_id)
        self.preferences.undone(self.backends.sessions(owner), session_id, removed)
        return removed, version

    # -- the shared end: answer, store ----------------------------------------------------------
    async def _answer_and_store(self, ex: Exchange) -> AsyncGenerator[ChatEvent]:
        prompt, clock = ex.prompt, ex.clock
        to_answer = PromptIds(prompt.ids, prompt.messages, ex.session_id, ex.input_check)
        answering = self.answerer.answer(to_answer, ex.plan, clock)
        first = asyncio.ensure_future(anext(answering))  # the engine starts while the turn is stored
        answer: Answer | None = None
        try:
            if ex.rollback.pending_push is not None:
                # shielded: a cancel must not cut the pushes short
                first_turn, pushed = await asyncio.shield(ex.rollback.pending_push)
                ex.rollback.pending_push = None
                ex.user_turn_id, ex.version = first_turn, pushed.version
            yield SessionEvent(ex.session_id, ex.rollback.created, ex.user_turn_id,
                               prompt.context_turns, prompt.truncated, len(prompt.ids),
                               prompt.text if ex.plan.options.echo_prompt else "")
            item: DeltaEvent | Answer | None = await first
            while item is not None:
                if isinstance(item, Answer):
                    answer = item
                else:
                    yield item
                item = await anext(answering, None)
        finally:
            if not first.done():
                await cancelled(first)
            await answering.aclose()  # early: cancels the generation stream, the engine aborts
        if answer is None or not (answer.best.text or answer.best.tool_calls or answer.best.moderation):
            raise FailedPrecondition("the model produced an empty answer; regenerate")
        t = time.perf_counter()
        stored = await self._store(ex, answer)
        clock.add("session_write", t)
        ex.rollback.done()
        self.preferences.answered(ex, stored.turn.turn_id, answer)
        if answer.reward_status == "pending" and not self.scorer.submit(
                ex.sessions, ex.session_id, stored.turn.turn_id, prompt.messages, answer.best.text):
            answer = replace(answer, reward_status="off")
        yield FinalEvent(stored.turn.turn_id, stored.version, answer, clock.finish(self.metrics))

    @staticmethod
    async def _store(ex: Exchange, answer: Answer) -> PushResult:
        """Push the answer at the version the exchange read, in one script with what it completes:
        committing the pending user turn, or replacing the answer a regenerate replaces."""
        best, m = answer.best, answer.best.moderation
        meta = AnswerMeta(best.finish_reason, prompt_tokens=len(ex.prompt.ids),  # the window it was made from
                          reward_score=best.reward if answer.reward_status == "scored" else None,
                          best_of=len(answer.candidates),
                          moderation=f"{m.stage}:{m.category}:{m.flagged_by}" if m else "",
                          refusal=m.refusal if m else "")
        # A stopped answer is stored as the client saw it: what streamed, then the refusal.
        text = (best.text + m.refusal if not best.text or best.text.endswith(("\n", " ")) else
                f"{best.text} {m.refusal}") if m else best.text
        return await ex.sessions.push(TurnPush(
            ex.session_id, ASSISTANT, text,
            len(best.token_ids),  # the generated ids are the answer's tokens: no recount
            expected_version=ex.version, metadata=meta.encode(), commit_turn_id=ex.rollback.pending_turn_id,
            replace_turn_id=ex.replaced.turn_id if ex.replaced is not None else "",
            tool_calls=best.tool_calls))


def _check_answers_open_calls(ctx: ChatContext, call_ids: list[str]) -> None:
    """Tool results answer calls of the conversation's last answer, each a different one that has
    no result yet."""
    if not call_ids:
        return
    open_calls: set[str] = set()
    answered: set[str] = set()
    for m in reversed(ctx.messages):
        if m.role == TOOL:
            answered.add(m.tool_call_id)
            continue
        if m.role == ASSISTANT:
            open_calls = {c.id for c in m.tool_calls} - answered
        break
    for call_id in call_ids:
        if call_id not in open_calls:
            raise InvalidRequest(f"tool_call_id: {call_id!r} is not an unanswered tool call of the "
                                 "conversation's last answer")
        open_calls.discard(call_id)
