"""The fuzz suite's own machinery, without servers: strategies build what they claim, raw bytes
are malformed the way they claim, and the oracles catch what they must."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatstack.v1 import chat_pb2, session_pb2, tokenizer_pb2
from tests.fuzz.domain import (
    GATEWAY_SPOOFS,
    GATEWAY_USERS,
    SERVICES,
    FuzzCall,
    message_calls,
    rpcs_of,
    secret_marker,
)
from tests.fuzz.harness import Outcome, exception_line, normalize
from tests.fuzz.oracles import Ledger, check_deadline, check_identity, check_status, check_stored
from tests.fuzz.protobuf_strategies import message_class
from tests.fuzz.wire import INVALID_UTF8, nested_string, string_paths, varint

FAST = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@FAST
@given(data=st.data())
def test_generated_requests_of_every_rpc_round_trip_through_the_wire_format(data: st.DataObject) -> None:
    call = data.draw(st.sampled_from(SERVICES).flatmap(message_calls))
    parsed = message_class(call.rpc.input).FromString(call.payload)
    assert parsed.SerializeToString(deterministic=True) == call.message.SerializeToString(deterministic=True)  # type: ignore[union-attr]
    assert len(call.payload) < 64 << 20


def test_varints_and_nested_strings_are_what_protobuf_reads() -> None:
    assert [varint(v) for v in (0, 1, 300, 2**64 - 1)] == [b"\x00", b"\x01", b"\xac\x02", b"\xff" * 9 + b"\x01"]
    path = next(p for p in string_paths(chat_pb2.EditRequest.DESCRIPTOR) if p[-1].name == "stop")
    assert list(chat_pb2.EditRequest.FromString(nested_string(path, b"ok")).options.stop) == ["ok"]
    for bad in INVALID_UTF8:
        with pytest.raises(DecodeError):
            chat_pb2.EditRequest.FromString(nested_string(path, bad))


def _call(service: str, rpc: str, identity_index: int = 0) -> FuzzCall:
    match = next(r for r in rpcs_of(service) if r.name == rpc)
    identity = (*GATEWAY_USERS, *GATEWAY_SPOOFS)[identity_index]
    return FuzzCall(service, match, b"", identity, "message", message_class(match.input)())


def _outcome(code: str = "OK", details: str = "", *responses: object) -> Outcome:
    raw = [r.SerializeToString() for r in responses]  # type: ignore[attr-defined]
    return Outcome(code, details, 0.01, list(responses), raw)  # type: ignore[arg-type]


def test_oracles_catch_internal_hangs_leaks_and_bad_ids() -> None:
    history = chat_pb2.GetHistoryResponse(turns=[session_pb2.Turn(content=f"hi {secret_marker('bob')}")])
    assert check_status(_call("chat", "GetHistory"), _outcome("INTERNAL", "boom"))[0].oracle == "status INTERNAL"
    assert check_deadline(_call("chat", "Chat"), _outcome("DEADLINE_EXCEEDED"), 30)[0].oracle == "hang"
    assert check_identity(_call("chat", "GetHistory"), _outcome("OK", "", history), Ledger())[0].oracle == "leak"
    assert not check_identity(_call("chat", "GetHistory", 1), _outcome("OK", "", history), Ledger())  # bob's own
    no_key = _call("chat", "ListSessions", 6)
    assert check_identity(no_key, _outcome("OK", "", chat_pb2.ChatServiceListSessionsResponse()), Ledger())
    created = chat_pb2.ChatServiceCreateSessionResponse(session=session_pb2.Session(session_id="a\n", owner="alice"))
    assert check_stored(_call("chat", "CreateSession"), _outcome("OK", "", created))[0].oracle == "malformed session id stored"
    tokenizer = FuzzCall("tokenizer", rpcs_of("tokenizer")[0], b"", GATEWAY_USERS[0], "message", tokenizer_pb2.EncodeRequest())
    assert check_status(tokenizer, _outcome("INVALID_ARGUMENT")) == []


def test_violations_group_by_cause_and_the_log_gives_the_exception() -> None:
    assert normalize("internal error (request id 0123456789abcdef0123)") == normalize("internal error (request id fedcba9876543210aaaa)")
    log = ["2026-01-01 00:00:00,000 ERROR session [r1] chatstack.core.interceptor: unexpected error",
           "Traceback (most recent call last):", '  File "x.py", line 1, in f', "ValueError: bad page token",
           "2026-01-01 00:00:01,000 INFO session [-] next record"]
    assert exception_line(log, 1) == "ValueError: bad page token"
