"""ChatDataPlane's writes beside generation, with a fake of its downstream services.

The push of the user turn (and a new session's create) runs beside the start of generation, so a
failure or a cancel can come while the push is still in flight, or from generation after it
landed. These tests pin the moments the real services cannot be made to hit on cue;
tests/integration/test_gateway.py runs the same class over the real services.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from types import SimpleNamespace
from typing import Any

import pytest

from chatstack.core.errors import BackendUnavailable, VersionConflict
from chatstack.core.roles import USER
from chatstack.gateway.clients import Backends
from chatstack.gateway.config import GatewayConfig
from chatstack.gateway.dataplane import ChatDataPlane
from chatstack.gateway.flows import GatewayFlows
from chatstack.gateway.metrics import GatewayMetrics
from chatstack.gateway.model import ChatOptions
from chatstack.gateway.plan import Planner
from chatstack.gateway.session_records import Message
from chatstack.v1 import common_pb2, generation_pb2, session_pb2, tokenizer_pb2

TEXT = "hello there"
MESSAGE = [Message(USER, TEXT)]


class FakeDownstream:
    """One in-memory session plus a tokenizer that counts words; hooks let a test intervene."""

    def __init__(self) -> None:
        self.turns: list[session_pb2.Turn] = []  # the visible stack
        self.pending: session_pb2.Turn | None = None  # a pending turn (PushTurnRequest.pending_ms)
        self.pop_error: Exception | None = None  # raised by PopTurn (the store is unreachable)
        self.version = 1
        self.push_gate: asyncio.Event | None = None  # a push waits on it (then lands)
        self.push_started = asyncio.Event()
        self.render_error: Exception | None = None
        self.generation_error: Exception | None = None  # raised by the stream before its first delta
        self.generation_closed = asyncio.Event()
        self.after_read: Any = None  # called after GetContext answers
        self.created: dict[str, session_pb2.Session] = {}
        self.create_gate: asyncio.Event | None = None  # a create lands, then waits on it
        self.create_landed = asyncio.Event()
        self.session = SimpleNamespace(GetContext=self._get_context, PushTurn=self._push, PopTurn=self._pop,
                                       CreateSession=self._create, DeleteSession=self._delete,
                                       ForkSession=self._fork, PeekTurns=self._peek)
        self.tokenizer = SimpleNamespace(CountTokens=self._count, ApplyChatTemplate=self._render)
        self.generation = SimpleNamespace(GetModelInfo=self._model_info)

    async def call(self, service: str, method: str, request: Any, owner: str | None = None,
                   timeout: float | None = None, route_key: str | None = None) -> Any:  # noqa: ASYNC109
        return await getattr(getattr(self, service), method)(request)

    async def generate_stream(self, request: generation_pb2.GenerateStreamRequest, route_key: str | None = None
                              ) -> AsyncGenerator[generation_pb2.GenerateStreamResponse]:
        try:
            if self.generation_error is not None:
                raise self.generation_error
            yield generation_pb2.GenerateStreamResponse(delta=generation_pb2.GenerationDelta(text="hi", token_ids=[5]))
            yield generation_pb2.GenerateStreamResponse(final=generation_pb2.GenerateResponse(
                choices=[generation_pb2.Choice(text="hi", token_ids=[5], finish_reason=common_pb2.FINISH_REASON_STOP)]))
        finally:
            self.generation_closed.set()

    async def close(self) -> None:
        """Nothing to close (the `Transport` protocol's)."""

    async def _model_info(self, request: Any) -> generation_pb2.GetModelInfoResponse:
        return generation_pb2.GetModelInfoResponse(max_model_len=2048)

    async def _count(self, request: tokenizer_pb2.CountTokensRequest) -> tokenizer_pb2.CountTokensResponse:
        return tokenizer_pb2.CountTokensResponse(counts=[len(t.split()) for t in request.texts])

    async def _render(self, request: tokenizer_pb2.ApplyChatTemplateRequest
                      ) -> tokenizer_pb2.ApplyChatTemplateResponse:
        if self.render_error is not None and request.messages[-1].content == TEXT:  # not the probes
            raise self.render_error
        ids = [1] + [7 for m in request.messages for _ in range(len(m.content.split()) + 2)]
        counts = [len(request.messages[i].content.split()) for i in request.count_messages]
        return tokenizer_pb2.ApplyChatTemplateResponse(prompt="p", token_ids=ids, message_token_counts=counts)

    async def _create(self, request: session_pb2.CreateSessionRequest) -> session_pb2.CreateSessionResponse:
        sid = request.session_id or "picked-by-the-service"
        self.created[sid] = session_pb2.Session(session_id=sid, version=1)
        self.create_landed.set()
        if self.create_gate is not None:
            await self.create_gate.wait()
        return session_pb2.CreateSessionResponse(session=self.created[sid])

    async def _fork(self, request: session_pb2.ForkSessionRequest) -> session_pb2.ForkSessionResponse:
        created = await self._create(session_pb2.CreateSessionRequest(session_id=request.new_session_id))
        return session_pb2.ForkSessionResponse(session=created.session)

    async def _delete(self, request: session_pb2.DeleteSessionRequest) -> session_pb2.DeleteSessionResponse:
        del self.created[request.session_id]
        return session_pb2.DeleteSessionResponse()

    async def _peek(self, request: session_pb2.PeekTurnsRequest) -> session_pb2.PeekTurnsResponse:
        return session_pb2.PeekTurnsResponse(turns=list(reversed(self.turns))[:request.n], version=self.version)

    async def _get_context(self, request: session_pb2.GetContextRequest) -> session_pb2.GetContextResponse:
        reply = session_pb2.GetContextResponse(turns=self.turns, version=self.version)
        if self.after_read is not None:
            self.after_read()
        return reply

    async def _push(self, request: session_pb2.PushTurnRequest) -> session_pb2.PushTurnResponse:
        self.push_started.set()
        if self.push_gate is not None:
            await self.push_gate.wait()
        if request.commit_turn_id:
            assert self.pending is not None and self.pending.turn_id == request.commit_turn_id
        elif self.pending is not None:
            raise VersionConflict("a turn of the session is being answered")
        if request.HasField("expected_version") and request.expected_version != self.version:
            raise VersionConflict(f"at version {self.version}, expected {request.expected_version}")
        if request.commit_turn_id:
            self.turns.append(self.pending)  # type: ignore[arg-type]
            self.pending = None
        if request.replace_turn_id:
            assert self.turns[-1].turn_id == request.replace_turn_id
            self.turns.pop()
        turn = session_pb2.Turn(turn_id=f"t{self.version}", role=request.role, content=request.content,
                                token_count=request.token_count)
        if request.pending_ms:
            self.pending = turn
        else:
            self.turns.append(turn)
        self.version += 1
        return session_pb2.PushTurnResponse(turn=turn, version=self.version)

    async def _pop(self, request: session_pb2.PopTurnRequest) -> session_pb2.PopTurnResponse:
        if self.pop_error is not None:
            raise self.pop_error
        if request.pending_turn_id:
            assert self.pending is not None and self.pending.turn_id == request.pending_turn_id
            turns, self.pending = [self.pending], None
        else:
            if request.HasField("expected_version") and request.expected_version != self.version:
                raise VersionConflict(f"at version {self.version}, expected {request.expected_version}")
            turns = [self.turns.pop() for _ in range(max(1, request.count))]
        self.version += 1
        return session_pb2.PopTurnResponse(turn=turns[0], version=self.version, turns=turns)


CONFIG = GatewayConfig(single_answer_scoring="off")  # the fake has no reward model
PLAN = Planner(CONFIG).plan(ChatOptions(max_tokens=8))


def dataplane(ds: FakeDownstream) -> ChatDataPlane:
    return GatewayFlows.build(CONFIG, Backends(ds), GatewayMetrics()).dataplane


async def first_event(flow: ChatDataPlane) -> Any:
    async for event in flow.chat("alice", "s1", "", MESSAGE, PLAN):
        return event


async def test_a_render_failure_writes_nothing() -> None:
    ds = FakeDownstream()
    ds.render_error = BackendUnavailable("tokenizer service unavailable: down")
    with pytest.raises(BackendUnavailable, match="tokenizer"):
        await first_event(dataplane(ds))
    assert ds.turns == [] and ds.version == 1 and not ds.push_started.is_set()


async def test_a_generation_failure_after_the_push_landed_takes_the_pending_user_turn_back() -> None:
    ds = FakeDownstream()
    ds.generation_error = BackendUnavailable("generation service unavailable: down")
    events = []
    with pytest.raises(BackendUnavailable, match="generation"):
        async for event in dataplane(ds).chat("alice", "s1", "", MESSAGE, PLAN):
            events.append(event)
    assert len(events) == 1 and events[0].user_turn_id == "t1"  # the first event named the stored turn
    assert ds.turns == [] and ds.pending is None and ds.version == 3  # pushed pending, then taken back


async def test_a_failure_whose_rollback_cannot_reach_the_store_leaves_its_turn_pending_never_visible() -> None:
    ds = FakeDownstream()
    ds.generation_error = BackendUnavailable("generation service unavailable: down")
    ds.pop_error = BackendUnavailable("the session store is unreachable; retry")
    with pytest.raises(BackendUnavailable, match="generation"):
        async for _ in dataplane(ds).chat("alice", "s1", "", MESSAGE, PLAN):
            pass
    assert ds.turns == []  # no lone user turn: it stays pending until its lease ends and it is reaped
    assert ds.pending is not None and ds.pending.content == TEXT


async def test_a_regenerate_replaces_the_answer_in_one_push() -> None:
    ds = FakeDownstream()
    flow = dataplane(ds)
    [e async for e in flow.chat("alice", "s1", "", MESSAGE, PLAN)]
    old = ds.turns[-1].turn_id
    ds.pop_error = AssertionError("a regenerate pops nothing")
    events = [e async for e in flow.regenerate("alice", "s1", PLAN)]
    assert [t.content for t in ds.turns] == [TEXT, "hi"] and ds.turns[-1].turn_id != old
    assert events[-1].assistant_turn_id == ds.turns[-1].turn_id

async def test_a_whole_chat_stores_both_turns_with_the_counts_of_the_rendering_call() -> None:
    ds = FakeDownstream()
    events = [e async for e in dataplane(ds).chat("alice", "s1", "", MESSAGE, PLAN)]
    assert [type(e).__name__ for e in events] == ["SessionEvent", "DeltaEvent", "FinalEvent"]
    assert [(t.content, t.token_count) for t in ds.turns] == [(TEXT, 2), ("hi", 1)]
    assert events[-1].answer.reward_status == "off" and ds.version == 3 and ds.pending is None


async def test_a_cancel_while_the_push_is_in_flight_still_undoes_the_push() -> None:
    ds = FakeDownstream()
    ds.push_gate = asyncio.Event()
    task = asyncio.create_task(first_event(dataplane(ds)))
    await asyncio.wait_for(ds.push_started.wait(), 5)
    task.cancel()
    # The cancel reaches the call in the loop's next step; the push lands only in a step after it.
    asyncio.get_running_loop().call_soon(ds.push_gate.set)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ds.turns == [] and ds.pending is None and ds.version == 3


async def test_a_session_changed_between_read_and_push_is_aborted_and_nothing_of_ours_is_left() -> None:
    ds = FakeDownstream()

    def someone_else_pushes() -> None:
        ds.turns.append(session_pb2.Turn(turn_id="other", content="x", token_count=1))
        ds.version += 1
    ds.after_read = someone_else_pushes
    with pytest.raises(VersionConflict):
        await first_event(dataplane(ds))
    assert [t.turn_id for t in ds.turns] == ["other"] and ds.version == 2
    await asyncio.wait_for(ds.generation_closed.wait(), 5)  # the generation started beside it was cancelled


async def cancel_once_the_session_landed(ds: FakeDownstream, flow: Any) -> None:
    """Run `flow` (an event stream) until the session service has created (or forked) a session
    but not yet answered, cancel it there, and wait for the cancel to finish."""
    ds.create_gate = asyncio.Event()

    async def first() -> None:
        async for _ in flow:
            return

    task = asyncio.create_task(first())
    await asyncio.wait_for(ds.create_landed.wait(), 5)
    assert len(ds.created) == 1
    task.cancel()
    asyncio.get_running_loop().call_soon(ds.create_gate.set)  # its answer comes after the cancel
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_new_session_chat_cancelled_while_its_session_is_created_deletes_the_session() -> None:
    """The create lands in the session service, but the call is cancelled before its answer
    arrives: the gateway chose the id itself, so it still deletes the session (no orphan)."""
    ds = FakeDownstream()
    await cancel_once_the_session_landed(
        ds, dataplane(ds).chat("alice", "", "be brief", MESSAGE, PLAN))
    assert ds.created == {}


async def test_an_edit_cancelled_while_its_fork_is_made_deletes_the_fork() -> None:
    ds = FakeDownstream()
    await cancel_once_the_session_landed(
        ds, dataplane(ds).edit("alice", "s1", "t1", TEXT, PLAN))
    assert ds.created == {}
