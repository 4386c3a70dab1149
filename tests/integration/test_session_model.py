"""Model-based test: random push/pop/peek/fork/context/delete sequences against the real
session service (real Redis) and a pure-Python reference stack give identical results."""

from __future__ import annotations

import uuid

import grpc
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, rule

from chatstack.v1 import common_pb2, session_pb2, session_pb2_grpc
from tests.reference_session import ReferenceSessions, RefTurn

pytestmark = pytest.mark.integration

ROLES = {"user": common_pb2.ROLE_USER, "assistant": common_pb2.ROLE_ASSISTANT}


def _code(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    try:
        return "OK", fn(*args, **kwargs)
    except grpc.RpcError as err:
        return err.code().name, None


@pytest.fixture(scope="module")
def stub_holder(session_stub: session_pb2_grpc.SessionServiceStub) -> dict[str, object]:
    return {"stub": session_stub}


class SessionStackMachine(RuleBasedStateMachine):
    """Drives the real service and the reference side by side."""

    stub: session_pb2_grpc.SessionServiceStub
    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        self.ref = ReferenceSessions()
        self.md = (("x-chatstack-owner", f"model-{uuid.uuid4().hex[:8]}"),)
        self.live: set[str] = set()

    @initialize(target=sessions, system_tokens=st.integers(0, 20))
    def first_session(self, system_tokens: int) -> str:
        return self._create(system_tokens)

    def _create(self, system_tokens: int) -> str:
        reply = self.stub.CreateSession(session_pb2.CreateSessionRequest(
            system_prompt="sys", system_prompt_tokens=system_tokens), metadata=self.md)
        sid = reply.session.session_id
        self.ref.create(sid, system_tokens)
        self.live.add(sid)
        return sid

    @rule(target=sessions, system_tokens=st.integers(0, 20))
    def create(self, system_tokens: int) -> str:
        return self._create(system_tokens)

    # Pushes build the deep stacks the other rules need: several rules so that swarm testing
    # (which switches rules off per example) rarely leaves none.
    @rule(sid=sessions, content=st.text(min_size=1, max_size=12), tokens=st.integers(0, 12))
    def push_user(self, sid: str, content: str, tokens: int) -> None:
        self._push(sid, "user", content, tokens, "none")

    @rule(sid=sessions, content=st.text(min_size=1, max_size=12), tokens=st.integers(0, 12))
    def push_assistant(self, sid: str, content: str, tokens: int) -> None:
        self._push(sid, "assistant", content, tokens, "none")

    @rule(sid=sessions, role=st.sampled_from(sorted(ROLES)), tokens=st.integers(0, 12),
          expected=st.sampled_from(["right", "wrong"]))
    def push_with_version(self, sid: str, role: str, tokens: int, expected: str) -> None:
        self._push(sid, role, "versioned", tokens, expected)

    def _push(self, sid: str, role: str, content: str, tokens: int, expected: str) -> None:
        ref_session = self.ref.sessions.get(sid)
        version = ref_session.version if ref_session else 1
        exp = {"none": None, "right": version, "wrong": version + 7}[expected]
        req = session_pb2.PushTurnRequest(session_id=sid, role=ROLES[role], content=content,
                                          token_count=tokens)
        if exp is not None:
            req.expected_version = exp
        code, reply = _code(self.stub.PushTurn, req, metadata=self.md)
        want_code, want_pos = self.ref.push(sid, RefTurn(role, content, tokens), exp)
        assert code == want_code
        if reply is not None:
            assert reply.turn.position == want_pos
            assert reply.version == self.ref.sessions[sid].version

    @rule(sid=sessions)
    def pop(self, sid: str) -> None:
        code, reply = _code(self.stub.PopTurn, session_pb2.PopTurnRequest(session_id=sid),
                            metadata=self.md)
        want_code, want = self.ref.pop(sid)
        assert code == want_code
        if want is not None:
            assert (reply.turn.content, reply.turn.token_count) == (want.content, want.token_count)

    @rule(sid=sessions, n=st.integers(1, 8))
    def peek(self, sid: str, n: int) -> None:
        code, reply = _code(self.stub.PeekTurns, session_pb2.PeekTurnsRequest(session_id=sid, n=n),
                            metadata=self.md)
        want_code, want = self.ref.peek(sid, n)
        assert code == want_code
        if reply is not None:
            assert [(t.content, t.token_count) for t in reply.turns] == \
                [(t.content, t.token_count) for t in want]

    @rule(sid=sessions, budget=st.integers(1, 60))
    def context(self, sid: str, budget: int) -> None:
        code, reply = _code(self.stub.GetContext, session_pb2.GetContextRequest(
            session_id=sid, token_budget=budget), metadata=self.md)
        want_code, want, omitted = self.ref.context(sid, budget)
        assert code == want_code
        if reply is not None:
            assert [(t.content, t.token_count) for t in reply.turns] == \
                [(t.content, t.token_count) for t in want]
            assert reply.omitted_turns == omitted and reply.truncated == (omitted > 0)
            assert reply.total_tokens == self.ref.sessions[sid].system_tokens + sum(
                t.token_count for t in want)

    @rule(target=sessions, sid=sessions, keep=st.integers(0, 6))
    def fork(self, sid: str, keep: int) -> str:
        code, reply = _code(self.stub.ForkSession, session_pb2.ForkSessionRequest(
            session_id=sid, keep_turns=keep), metadata=self.md)
        new_sid = reply.session.session_id if reply is not None else f"missing-{uuid.uuid4().hex}"
        assert code == self.ref.fork(sid, new_sid, keep)
        return new_sid

    @rule(sid=consumes(sessions))
    def delete(self, sid: str) -> None:
        code, _ = _code(self.stub.DeleteSession, session_pb2.DeleteSessionRequest(session_id=sid),
                        metadata=self.md)
        assert code == self.ref.delete(sid)

    @invariant()
    def headers_agree(self) -> None:
        for sid, ref in self.ref.sessions.items():
            got = self.stub.GetSession(session_pb2.GetSessionRequest(session_id=sid),
                                       metadata=self.md).session
            assert got.turn_count == len(ref.turns)
            assert got.total_tokens == sum(t.token_count for t in ref.turns)


def test_service_matches_reference_stack(session_stub: session_pb2_grpc.SessionServiceStub) -> None:
    SessionStackMachine.stub = session_stub
    SessionStackMachine.TestCase.settings = settings(
        max_examples=60, stateful_step_count=40, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    SessionStackMachine.TestCase().runTest()
