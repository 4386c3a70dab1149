"""Capturing preference signals while serving (`capture_preferences`): the RLHF data loop.

Each signal becomes a `PreferenceEvent` appended to the session store's preference stream (one
Redis Stream per deployment, beside the sessions; see `chatstack.session.preference_store`):

- feedback: a user's rating of an assistant turn and/or the best-of candidate they prefer, with
  a reason (SubmitFeedback, `POST /v1/responses/{id}/feedback`); awaited, so an acknowledged
  feedback is stored. A later feedback on the same turn replaces the earlier.
- best_of: every candidate of a best-of-n answer with its reward; `kept` marks the stored one.
- regenerate: the replaced answer and the new one (kept).
- edit: the user turn before and after, and the fork holding the edited conversation.
- undo: the exchange removed.
- moderated: an answer the safety stage stopped: the refusal shown (kept) and the stopped answer.

Implicit signals are written in the background after the chat's answer is stored, with their
own deadline, so capture adds no latency to a chat and a failed write never fails one; at most
`max_pending_preference_writes` are in flight (beyond, an event is dropped and counted). Each
event carries its provenance: the owner (set by the session service), session and turn ids, the
prompt (system prompt and turns up to the user message), the generator's and reward model's
names and versions, the sampling settings and the time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from chatstack.core.background import BackgroundTasks
from chatstack.core.errors import FailedPrecondition, InvalidRequest, NotFound
from chatstack.core.roles import ASSISTANT, SYSTEM, USER
from chatstack.gateway.clients import Backends, SessionClient
from chatstack.gateway.config import GatewayConfig
from chatstack.gateway.exchange import Exchange
from chatstack.gateway.metrics import GatewayMetrics
from chatstack.gateway.model import Answer
from chatstack.gateway.plan import Plan
from chatstack.gateway.session_records import (
    AnswerMeta,
    Message,
    PreferenceCandidate,
    PreferenceEvent,
    PreferenceKind,
    Rating,
)
from chatstack.session.model import SessionHeader, Turn

log = logging.getLogger(__name__)

MAX_REASON_BYTES = 2048
WRITE_TIMEOUT_SECONDS = 10.0
RATINGS: tuple[Rating, ...] = ("up", "down", "")
# Fills in what an event needs read from the session before it is written.
_Completer = Callable[[SessionClient, PreferenceEvent], Awaitable[None]]


@dataclass(frozen=True)
class Feedback:
    """A user's feedback on an assistant turn."""

    session_id: str
    turn_id: str
    rating: str = ""  # up, down or "" (a value the caller sent that names no rating is refused)
    preferred_candidate: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class FeedbackResult:
    """The stored feedback event, and whether it replaced an earlier one on the turn."""

    event_id: str
    replaced: bool


@dataclass(frozen=True)
class EditedTurn:
    """An edit: the user turn `turn_id` of `session_id` asked again as `message`, in the fork `fork_id`."""

    session_id: str
    turn_id: str
    message: str
    fork_id: str


def sampling_of(plan: Plan) -> dict[str, str]:
    """The sampling settings an event records (the plan's, and the options set)."""
    o = plan.options
    fields = {"temperature": plan.temperature, "top_p": o.top_p, "top_k": o.top_k, "seed": o.seed,
              "max_tokens": plan.max_tokens, "best_of": plan.best_of if plan.best_of > 1 else None}
    return {k: repr(v) if isinstance(v, float) else str(v) for k, v in fields.items() if v is not None}


def conversation(system_prompt: str, turns: Sequence[Turn]) -> list[Message]:
    """A system prompt and turns as chat messages."""
    messages = [Message(SYSTEM, system_prompt)] if system_prompt else []
    return messages + [Message(t.role, t.content, t.tool_calls, t.tool_call_id) for t in turns]


def _reward_of(turn: Turn) -> float | None:
    return AnswerMeta.decode(turn.metadata).reward_score


class PreferenceRecorder:
    """Builds and writes preference events (see module docstring)."""

    def __init__(self, config: GatewayConfig, backends: Backends, metrics: GatewayMetrics) -> None:
        self.enabled = config.capture_preferences
        self.backends = backends
        self.metrics = metrics
        self.tasks = BackgroundTasks(config.max_pending_preference_writes, WRITE_TIMEOUT_SECONDS)

    # -- provenance -------------------------------------------------------------------------
    async def models(self) -> tuple[str, str]:
        """`name@version` of the generator and of the reward model."""
        generator, reward = await asyncio.gather(self.backends.generation.info(), self.backends.reward.info())
        return generator.named, reward.named

    async def _stamp(self, event: PreferenceEvent) -> PreferenceEvent:
        event.generator_model, event.reward_model = await self.models()
        event.create_time_ms = int(time.time() * 1000)
        return event

    # -- implicit signals (background) --------------------------------------------------------
    def answered(self, ex: Exchange, turn_id: str, answer: Answer) -> None:
        """After an exchange's answer was stored as `turn_id`: its best-of candidates, and the
        answer it replaced."""
        if not self.enabled:
            return
        sessions, session_id, user_turn_id = ex.sessions, ex.session_id, ex.user_turn_id
        replaced = ex.replaced
        prompt, sampling = ex.prompt.messages, sampling_of(ex.plan)
        if answer.candidates:
            self._submit(sessions, PreferenceEvent(
                "best_of", session_id, turn_id, user_turn_id, list(prompt), sampling=sampling, candidates=[
                    PreferenceCandidate(c.text, c.reward_score, c.chosen, turn_id if c.chosen else "",
                                        c.completion_tokens) for c in answer.candidates]))
        if (m := answer.best.moderation) is not None:
            stopped = [PreferenceCandidate(m.stopped_text)] if m.stopped_text else []
            self._submit(sessions, PreferenceEvent(
                "moderated", session_id, turn_id, user_turn_id, list(prompt), sampling=sampling, candidates=[
                    PreferenceCandidate(m.refusal, kept=True, turn_id=turn_id), *stopped]))
        if replaced is not None:
            new_reward = answer.best.reward if answer.reward_status == "scored" else None
            self._submit(sessions, PreferenceEvent(
                "regenerate", session_id, turn_id, user_turn_id, list(prompt), sampling=sampling, candidates=[
                    PreferenceCandidate(replaced.content, _reward_of(replaced),
                                        turn_id=replaced.turn_id, tool_calls=replaced.tool_calls),
                    PreferenceCandidate(answer.best.text, new_reward, True, turn_id,
                                        answer.completion_tokens, answer.best.tool_calls)]))

    def edited(self, sessions: SessionClient, edit: EditedTurn, answer_turn_id: str, plan: Plan) -> None:
        """After an edit's answer was stored in the fork: the user turn before and after."""
        if self.enabled:
            self._submit(sessions, PreferenceEvent(
                "edit", edit.session_id, answer_turn_id, edit.turn_id, edited_message=edit.message,
                fork_session_id=edit.fork_id, sampling=sampling_of(plan)), complete=self._with_original)

    def undone(self, sessions: SessionClient, session_id: str, removed: Sequence[Turn]) -> None:
        """After an undo: the removed exchange (removed turns top first)."""
        if not self.enabled or not removed:
            return
        answer = next((t for t in removed if t.role == ASSISTANT), None)
        user = next((t for t in removed if t.role == USER), None)
        event = PreferenceEvent("undo", session_id, answer.turn_id if answer else "",
                                user.turn_id if user else "")
        if answer is not None:
            event.candidates.append(PreferenceCandidate(answer.content, _reward_of(answer),
                                                        turn_id=answer.turn_id, tool_calls=answer.tool_calls))
        self._submit(sessions, event, complete=lambda s, e: self._with_history(s, e, user))

    # -- explicit feedback (awaited) ------------------------------------------------------------
    async def feedback(self, owner: str, fb: Feedback) -> FeedbackResult:
        """Store a user's feedback on one of their assistant turns (see module docstring)."""
        if not self.enabled:
            raise FailedPrecondition("feedback: this deployment does not capture preferences "
                                     "(gateway setting capture_preferences)")
        if not fb.session_id:
            raise InvalidRequest("session_id: empty")
        if not fb.turn_id:
            raise InvalidRequest("turn_id: empty")
        if fb.rating not in RATINGS:
            raise InvalidRequest(f"rating: {fb.rating} is not a rating")
        if not fb.rating and fb.preferred_candidate is None:
            raise InvalidRequest("rating: give a rating (up or down) or a preferred_candidate")
        if len(fb.reason.encode()) > MAX_REASON_BYTES:
            raise InvalidRequest(f"reason: exceeds the limit of {MAX_REASON_BYTES} bytes")
        sessions = self.backends.sessions(owner)
        session, turns = await self._history(sessions, fb.session_id)
        at = next((i for i, t in enumerate(turns) if t.turn_id == fb.turn_id), None)
        if at is None or turns[at].role != ASSISTANT:
            raise NotFound(f"turn_id: {fb.turn_id[:40]!r} is not an assistant turn of session "
                           f"{fb.session_id}")
        answer = turns[at]
        if fb.preferred_candidate is not None:
            count = AnswerMeta.decode(answer.metadata).best_of
            if fb.preferred_candidate >= count:
                raise InvalidRequest(
                    f"preferred_candidate: {fb.preferred_candidate} is not a candidate of the turn "
                    f"({count} candidates)" if count else
                    "preferred_candidate: the turn is not a best-of answer")
        user = next((t for t in reversed(turns[:at]) if t.role == USER), None)
        event = PreferenceEvent(
            "feedback", fb.session_id, answer.turn_id, user.turn_id if user else "",
            conversation(session.system_prompt, turns[:at]), rating=fb.rating,
            preferred_candidate=fb.preferred_candidate, reason=fb.reason, candidates=[
                PreferenceCandidate(answer.content, _reward_of(answer), True, answer.turn_id,
                                    tool_calls=answer.tool_calls)])
        try:
            reply = await sessions.record_preference(await self._stamp(event))
        except Exception:
            self.metrics.preference_events.labels("feedback", "failed").inc()
            raise
        self.metrics.preference_events.labels("feedback", "recorded").inc()
        return FeedbackResult(reply.event_id, reply.replaced)

    # -- plumbing -------------------------------------------------------------------------------
    @staticmethod
    async def _history(sessions: SessionClient, session_id: str) -> tuple[SessionHeader, list[Turn]]:
        return await sessions.get(session_id), await sessions.all_turns(session_id)

    async def _with_original(self, sessions: SessionClient, event: PreferenceEvent) -> None:
        """An edit's original message and prompt: the edited session up to the edited turn."""
        session, turns = await self._history(sessions, event.session_id)
        at = next((i for i, t in enumerate(turns) if t.turn_id == event.user_turn_id), len(turns))
        if at < len(turns):
            event.original_message = turns[at].content
        event.prompt.extend(conversation(session.system_prompt, turns[:at]))

    async def _with_history(self, sessions: SessionClient, event: PreferenceEvent, user: Turn | None) -> None:
        """An undo's prompt: the session as it is after the undo, plus the removed user turn."""
        session, turns = await self._history(sessions, event.session_id)
        event.prompt.extend(conversation(session.system_prompt, turns))
        if user is not None:
            event.prompt.append(Message(USER, user.content))

    def _submit(self, sessions: SessionClient, event: PreferenceEvent,
                complete: _Completer | None = None) -> None:
        if not self.tasks.start(self._write(sessions, event, event.kind, complete)):
            self.metrics.preference_events.labels(event.kind, "dropped").inc()

    async def _write(self, sessions: SessionClient, event: PreferenceEvent, kind: PreferenceKind,
                     complete: _Completer | None) -> None:
        try:
            if complete is not None:
                await complete(sessions, event)
            await sessions.record_preference(await self._stamp(event))
            outcome = "recorded"
        except NotFound:
            outcome = "gone"  # the session was deleted first
        except asyncio.CancelledError:
            self.metrics.preference_events.labels(kind, "failed").inc()
            raise
        except Exception as exc:
            log.warning("recording a %s preference event on %s failed: %s", kind, event.session_id, exc)
            outcome = "failed"
        self.metrics.preference_events.labels(kind, outcome).inc()

    async def close(self, grace_seconds: float) -> None:
        """Let pending writes finish within `grace_seconds`, then cancel the rest."""
        await self.tasks.close(grace_seconds)
