"""Stored responses on the session stack (OpenAI's Responses and Conversations model), transport-free.

A conversation is a chatstack session; a response is one exchange in it, named by the session and
the user turn it answers (`ResponseRef`): that turn id is known as soon as the turn is stored, so a
streamed response has its id in its first event. Continuing from a response:

- the session's latest response: the next exchange is pushed on the same session;
- an older one: the session is forked below the turn that followed it (the fork keeps everything up
  to and including that response) and the exchange goes to the fork, as an Edit does;
- no previous response and no conversation: a new session, `instructions` its system prompt.

`instructions` on an existing conversation replace its system prompt for that call only.
Deleting a response pops its exchange, which only the latest one can be: a stack.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass

from chatstack.core.errors import FailedPrecondition, InvalidRequest, NotFound
from chatstack.core.roles import ASSISTANT, TOOL, USER
from chatstack.gateway.conversations import Conversations
from chatstack.gateway.dataplane import ChatDataPlane
from chatstack.gateway.model import ChatEvent
from chatstack.gateway.plan import Plan
from chatstack.gateway.preferences import Feedback, FeedbackResult, PreferenceRecorder
from chatstack.gateway.session_records import Message
from chatstack.session.model import Turn

_HEX = frozenset("0123456789abcdef")
#: Turns read to find a stored exchange: its tools' results (at most max_tool_results, 14), the
#: answer and the turn after it.
EXCHANGE_READ = 16


@dataclass(frozen=True)
class ResponseRef:
    """One exchange: the session it is in and the user turn it answers."""

    session_id: str
    user_turn_id: str

    def encode(self) -> str:
        """The public response id."""
        return f"resp_{self.session_id}_{self.user_turn_id}"

    @classmethod
    def decode(cls, response_id: str, field: str = "response_id") -> ResponseRef:
        """A response id back to its parts; NotFound (naming `field`) if it is not one of ours."""
        parts = response_id.split("_")
        if len(parts) != 3 or parts[0] != "resp" or not all(p and set(p) <= _HEX for p in parts[1:]):
            raise NotFound(f"{field}: no response {response_id!r}")
        return cls(parts[1], parts[2])


@dataclass(frozen=True)
class StoredExchange:
    """A stored response: the turn it answers (a user's, or a tool's result) and the answer."""

    ref: ResponseRef
    user: Turn
    answer: Turn
    next_turn_id: str  # the turn after the answer ("" when this is the session's latest exchange)

    @property
    def latest(self) -> bool:
        """Whether this is the session's top exchange."""
        return not self.next_turn_id


class Responses:
    """Responses over the chat dataplane and the session operations (see module docstring)."""

    def __init__(self, dataplane: ChatDataPlane, conversations: Conversations,
                 preferences: PreferenceRecorder) -> None:
        self.dataplane = dataplane
        self.conversations = conversations
        self.preferences = preferences

    def check(self, inputs: Sequence[tuple[Message, str]]) -> None:
        """The input's limits, each message named by the caller's field, before any work."""
        self.dataplane.check_turns([m for m, _ in inputs], "input")
        for message, field in inputs:
            self.dataplane.check(message, field)

    async def create(self, owner: str, messages: Sequence[Message], plan: Plan,
                     instructions: str | None = None, conversation: str | None = None,
                     previous: ResponseRef | None = None) -> AsyncGenerator[ChatEvent]:
        """Answer `messages` (a user's message, or the results of the last answer's tool calls)
        and store the exchange (see module docstring); the chat events."""
        if conversation and previous:
            raise InvalidRequest("previous_response_id: cannot be used together with conversation")
        if previous is not None:
            exchange = await self.find(owner, previous, "previous_response_id")
            if not exchange.latest:  # fork below the turn that followed it
                if messages[0].role != USER:
                    raise InvalidRequest("previous_response_id: tool results continue only the "
                                         "conversation's latest response")
                async with aclosing(self.dataplane.edit(owner, previous.session_id, exchange.next_turn_id,
                                    messages[0].content, plan, instructions)) as source:
                    async for event in source:
                        yield event
                return
            conversation = previous.session_id
        async with aclosing(self.dataplane.chat(owner, conversation or "", instructions or "", messages,
                            plan, instructions)) as source:
            async for event in source:
                yield event

    async def find(self, owner: str, ref: ResponseRef, field: str = "response_id") -> StoredExchange:
        """The stored exchange of a response id (NotFound for another owner's or a missing one): one
        read of the turn it answers (a user's, or the first of its tools' results), the rest of
        them, the answer and the turn after, whatever the conversation's length."""
        try:
            turns = await self.conversations.turns_from(owner, ref.session_id, ref.user_turn_id,
                                                        EXCHANGE_READ)
        except (NotFound, InvalidRequest):  # no such session or turn, or ids no turn can have
            turns = []
        answer = 1
        while turns and turns[0].role == TOOL and answer < len(turns) and turns[answer].role == TOOL:
            answer += 1
        found = answer < len(turns) and turns[answer].role == ASSISTANT
        if found and turns[0].role in (USER, TOOL):
            following = turns[answer + 1].turn_id if len(turns) > answer + 1 else ""
            return StoredExchange(ref, turns[0], turns[answer], following)
        raise NotFound(f"{field}: no response {ref.encode()!r}")

    async def delete(self, owner: str, ref: ResponseRef) -> None:
        """Pop the response's exchange; only a conversation's latest response can go."""
        exchange = await self.find(owner, ref)
        if not exchange.latest:
            raise FailedPrecondition(f"response_id: {ref.encode()!r} is not its conversation's latest "
                                     "response; a conversation is a stack: delete from the top")
        await self.dataplane.undo(owner, ref.session_id, top_turn_id=exchange.answer.turn_id)

    async def feedback(self, owner: str, ref: ResponseRef, rating: str, preferred_candidate: int | None,
                       reason: str) -> FeedbackResult:
        """Feedback on the response's answer (see chatstack.gateway.preferences)."""
        exchange = await self.find(owner, ref)
        return await self.preferences.feedback(owner, Feedback(
            ref.session_id, exchange.answer.turn_id, rating, preferred_candidate, reason))
