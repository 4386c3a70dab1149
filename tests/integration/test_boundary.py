"""Every request a client can send gets a precise status: regressions of the hardening issue, each
over the real services (real Redis, real vLLM engines on the tiny models, real gRPC).

Each test names the class of input it pins; the fuzz suite (tests/fuzz) covers the rest.
"""

from __future__ import annotations

import math
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatstack.client import ChatClient
from chatstack.core.process import wait_until
from chatstack.v1 import (
    chat_pb2,
    chat_pb2_grpc,
    common_pb2,
    generation_pb2,
    generation_pb2_grpc,
    reward_pb2,
    reward_pb2_grpc,
    session_pb2,
    session_pb2_grpc,
    tokenizer_pb2,
    tokenizer_pb2_grpc,
)
from tests.integration.conftest import ALICE_KEY, BOB_KEY

pytestmark = pytest.mark.integration
INVALID = grpc.StatusCode.INVALID_ARGUMENT
ALICE_MD = (("authorization", f"Bearer {ALICE_KEY}"),)
BOB_MD = (("authorization", f"Bearer {BOB_KEY}"),)


def owner(name: str) -> tuple[tuple[str, str], ...]:
    return (("x-chatstack-owner", name),)


def status_of(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    """The status a call ends with (OK and "" when it succeeds); streams are drained."""
    try:
        result = call()
        if hasattr(result, "__next__"):
            for _ in result:
                pass
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.fixture(scope="module")
def channels(stack_addresses: dict[str, str], gateway: tuple[str, int]) -> Iterator[dict[str, grpc.Channel]]:
    opened = {name: grpc.insecure_channel(address) for name, address in
              {**stack_addresses, "gateway": gateway[0]}.items()}
    yield opened
    for channel in opened.values():
        channel.close()


@pytest.fixture(scope="module")
def generation(channels: dict[str, grpc.Channel]) -> generation_pb2_grpc.GenerationServiceStub:
    return generation_pb2_grpc.GenerationServiceStub(channels["generation"])


@pytest.fixture(scope="module")
def sessions(channels: dict[str, grpc.Channel]) -> session_pb2_grpc.SessionServiceStub:
    return session_pb2_grpc.SessionServiceStub(channels["session"])


@pytest.fixture(scope="module")
def chat(channels: dict[str, grpc.Channel]) -> chat_pb2_grpc.ChatServiceStub:
    return chat_pb2_grpc.ChatServiceStub(channels["gateway"])


# -- 1. the engine's own rules ------------------------------------------------------------------
@pytest.mark.parametrize(("sampling", "field"), [
    ({"temperature": 2.5}, "sampling.temperature"),
    ({"temperature": math.nan}, "sampling.temperature"),
    ({"temperature": math.inf}, "sampling.temperature"),
    ({"repetition_penalty": math.nan}, "sampling.repetition_penalty"),
    ({"repetition_penalty": math.inf}, "sampling.repetition_penalty"),
    ({"stop_token_ids": [10**6]}, "sampling.stop_token_ids[0]"),
    ({"min_tokens": 20}, "sampling.min_tokens"),  # above the effective max_tokens (8)
    ({"n": 2, "temperature": 0.0}, "sampling.n: greedy"),
])
def test_what_the_engine_refuses_is_invalid_argument_naming_the_field(
        generation: generation_pb2_grpc.GenerationServiceStub, sampling: dict[str, Any], field: str) -> None:
    request = generation_pb2.GenerateRequest(text="hello", sampling=generation_pb2.SamplingParams(
        max_tokens=8, **sampling))
    code, details = status_of(lambda: generation.Generate(request, timeout=30))
    assert code == INVALID and field in details, (code, details)


def test_the_largest_seed_with_several_choices_generates(
        generation: generation_pb2_grpc.GenerationServiceStub) -> None:
    request = generation_pb2.GenerateRequest(text="hello", sampling=generation_pb2.SamplingParams(
        n=2, seed=2**64 - 1, max_tokens=4, temperature=1.0))
    first = generation.Generate(request, timeout=30)
    again = generation.Generate(request, timeout=30)
    assert len(first.choices) == 2
    assert [list(c.token_ids) for c in first.choices] == [list(c.token_ids) for c in again.choices]


def test_greedy_best_of_answers_once(gateway: tuple[str, int]) -> None:
    """best_of with temperature 0 would be n copies of one answer: the gateway answers once."""
    with ChatClient(gateway[0], ALICE_KEY, timeout=120) as alice:
        result = alice.chat("tell me", best_of=4, temperature=0.0, max_tokens=8)
    assert result.text and result.candidates == []


# -- 2. page tokens -----------------------------------------------------------------------------
@pytest.mark.parametrize("token", ["²", "99999999999999999999999", "12", "-1", "\n"])
def test_a_page_token_not_issued_is_invalid_argument_without_backend_text(
        sessions: session_pb2_grpc.SessionServiceStub, chat: chat_pb2_grpc.ChatServiceStub, token: str) -> None:
    sid = sessions.CreateSession(session_pb2.CreateSessionRequest(), metadata=owner("alice")).session.session_id
    calls = [
        lambda: sessions.ListSessions(session_pb2.ListSessionsRequest(page_token=token), metadata=owner("alice")),
        lambda: sessions.ListTurns(session_pb2.ListTurnsRequest(session_id=sid, page_token=token),
                                   metadata=owner("alice")),
        lambda: chat.ListSessions(chat_pb2.ChatServiceListSessionsRequest(page_token=token), metadata=ALICE_MD),
        lambda: chat.GetHistory(chat_pb2.GetHistoryRequest(session_id=sid, page_token=token), metadata=ALICE_MD),
    ]
    for call in calls:
        code, details = status_of(call)
        assert code == INVALID and "page_token" in details, (code, details)
        assert "script" not in details.lower() and "redis" not in details.lower()


def test_page_tokens_handed_out_page_through_every_turn(sessions: session_pb2_grpc.SessionServiceStub) -> None:
    sid = sessions.CreateSession(session_pb2.CreateSessionRequest(), metadata=owner("alice")).session.session_id
    for i in range(5):
        sessions.PushTurn(session_pb2.PushTurnRequest(session_id=sid, role=common_pb2.ROLE_USER, content=f"m{i}"),
                          metadata=owner("alice"))
    seen, token = [], ""
    while True:
        page = sessions.ListTurns(session_pb2.ListTurnsRequest(session_id=sid, page_size=2, page_token=token),
                                  metadata=owner("alice"))
        seen += [t.content for t in page.turns]
        token = page.next_page_token
        if not token:
            break
        assert not token.isdigit()
    assert seen == [f"m{i}" for i in range(5)]


# -- 3. integer ranges --------------------------------------------------------------------------
def test_a_context_budget_beyond_int32_is_clamped_and_still_owner_checked(gateway: tuple[str, int]) -> None:
    with ChatClient(gateway[0], ALICE_KEY, timeout=120) as alice, \
            ChatClient(gateway[0], BOB_KEY, timeout=60) as bob:
        first = alice.chat("hello", max_tokens=4, temperature=1.0, context_token_budget=2**32 - 1)
        assert first.text
        with pytest.raises(grpc.RpcError) as err:
            bob.chat("mine now", session_id=first.session_id, max_tokens=4, context_token_budget=2**32 - 1)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


# -- 4. identifiers -----------------------------------------------------------------------------
@pytest.mark.parametrize("sid", ["abc\n", "a*", "a?b", "[x]", "{x}", "a b", "é", "x" * 129])
def test_ids_outside_the_grammar_are_refused_everywhere(
        sessions: session_pb2_grpc.SessionServiceStub, chat: chat_pb2_grpc.ChatServiceStub, sid: str) -> None:
    for call in (
        lambda: sessions.CreateSession(session_pb2.CreateSessionRequest(session_id=sid), metadata=owner("a")),
        lambda: sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid), metadata=owner("a")),
        lambda: chat.Chat(chat_pb2.ChatRequest(session_id=sid, message="hi"), metadata=ALICE_MD),
        lambda: chat.Undo(chat_pb2.UndoRequest(session_id=sid), metadata=ALICE_MD),
    ):
        code, details = status_of(call)
        assert code == INVALID and "session_id" in details, (code, details)


# -- 5. owner isolation -------------------------------------------------------------------------
def test_an_expired_session_id_taken_by_another_owner_is_never_listed_to_the_first(
        sessions: session_pb2_grpc.SessionServiceStub) -> None:
    sid = f"shared-{threading.get_ident()}"
    sessions.CreateSession(session_pb2.CreateSessionRequest(session_id=sid, ttl_seconds=1,
                                                            system_prompt="alice's"), metadata=owner("ann"))

    def expired() -> bool:  # listing does not refresh the TTL (reading the session would)
        listed = sessions.ListSessions(session_pb2.ListSessionsRequest(page_size=500), metadata=owner("ann"))
        return all(s.session_id != sid for s in listed.sessions)
    wait_until(expired, 10, "the 1 s session to expire", interval=0.1)
    sessions.CreateSession(session_pb2.CreateSessionRequest(session_id=sid, system_prompt="bert's secret",
                                                            metadata={"k": "bert"}), metadata=owner("bert"))
    listed = sessions.ListSessions(session_pb2.ListSessionsRequest(page_size=500), metadata=owner("ann")).sessions
    assert all(s.session_id != sid and s.owner == "ann" for s in listed)
    mine = sessions.ListSessions(session_pb2.ListSessionsRequest(page_size=500), metadata=owner("bert")).sessions
    assert [s.system_prompt for s in mine if s.session_id == sid] == ["bert's secret"]


# -- 6. malformed request bytes -----------------------------------------------------------------
SERVICES = {
    "tokenizer": tokenizer_pb2, "generation": generation_pb2, "reward": reward_pb2,
    "session": session_pb2, "gateway": chat_pb2,
}
TRUNCATED = b"\x0a\x10abc"  # field 1 says 16 bytes follow; 3 do


def invalid_utf8(request_type: Any) -> bytes | None:
    """The request with its first string field carrying bytes that are not UTF-8 (None if the
    request has no string field: unknown bytes are then skipped, as protobuf must)."""
    for field in request_type.fields:
        if field.type == field.TYPE_STRING:
            return bytes([field.number << 3 | 2, 3]) + b"\xff\xfe\xfd"
    return None


@pytest.mark.parametrize("kind", ["invalid-utf8", "truncated"])
def test_malformed_bytes_are_invalid_argument_on_every_rpc(channels: dict[str, grpc.Channel], kind: str) -> None:
    seen = 0
    for name, module in SERVICES.items():
        for service in module.DESCRIPTOR.services_by_name.values():
            for rpc in service.methods:
                payload = TRUNCATED if kind == "truncated" else invalid_utf8(rpc.input_type)
                if payload is None:
                    continue
                path = f"/{service.full_name}/{rpc.name}"
                factory = channels[name].unary_stream if rpc.server_streaming else channels[name].unary_unary
                call = factory(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
                code, details = status_of(lambda call=call, payload=payload: call(payload, timeout=10, metadata=ALICE_MD))
                assert code == INVALID and "request" in details, (path, code, details)
                seen += 1
    assert seen >= 20


# -- 7. large requests: refused by size first, the rest off the event loop ----------------------
def test_a_prompt_too_long_for_the_model_is_refused_by_its_size(
        generation: generation_pb2_grpc.GenerationServiceStub) -> None:
    code, details = status_of(lambda: generation.Generate(
        generation_pb2.GenerateRequest(text="word " * (2 * 1024 * 1024)), timeout=30))
    assert code == INVALID and "prompt.text" in details


def test_a_response_too_long_for_the_reward_model_is_refused_by_its_size(
        channels: dict[str, grpc.Channel]) -> None:
    stub = reward_pb2_grpc.RewardServiceStub(channels["reward"])
    item = reward_pb2.ScoreItem(conversation=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="q")],
                                response="a" * (10 * 1024 * 1024))
    for truncation in (reward_pb2.TRUNCATION_DISABLED, reward_pb2.TRUNCATION_AUTO):
        code, details = status_of(lambda t=truncation: stub.Score(
            reward_pb2.ScoreRequest(item=item, truncation=t), timeout=30))
        assert code == INVALID and "items[0].response" in details


def test_tokenizer_requests_over_the_per_request_limit_are_refused(channels: dict[str, grpc.Channel]) -> None:
    stub = tokenizer_pb2_grpc.TokenizerServiceStub(channels["tokenizer"])
    messages = [common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="x" * 999_000)] * 15
    code, details = status_of(lambda: stub.ApplyChatTemplate(
        tokenizer_pb2.ApplyChatTemplateRequest(messages=messages), timeout=30))
    assert code == INVALID and "per-request limit" in details


def test_health_answers_while_the_tokenizer_renders_a_large_conversation(tokenizer_address: str) -> None:
    """The largest conversation the limits allow renders on the pool: a health Check sent while
    it runs is answered before it ends (inline, the Check waited for the whole render)."""
    channel = grpc.insecure_channel(tokenizer_address, options=[("grpc.max_receive_message_length", 64 << 20)])
    stub = tokenizer_pb2_grpc.TokenizerServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    messages = [common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="ab cd " * 33_000)] * 10
    request = tokenizer_pb2.ApplyChatTemplateRequest(messages=messages)
    order: list[str] = []
    big = stub.ApplyChatTemplate.future(request, timeout=60)
    big.add_done_callback(lambda _: order.append("render"))
    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=30)
    order.append("health")
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert len(big.result().token_ids) > 100_000
    channel.close()
    assert order[0] == "health", order


# -- 8. metadata --------------------------------------------------------------------------------
@pytest.mark.parametrize(("metadata", "needle"), [
    ({"k": "v" * (8 * 1024 * 1024)}, "bytes exceed"),
    ({f"k{i}": "v" for i in range(65)}, "entries exceed"),
    ({"k" * 200: "v"}, "key"),
])
def test_metadata_is_bounded_on_create_push_and_fork(
        sessions: session_pb2_grpc.SessionServiceStub, metadata: dict[str, str], needle: str) -> None:
    sid = sessions.CreateSession(session_pb2.CreateSessionRequest(), metadata=owner("meta")).session.session_id
    for call in (
        lambda: sessions.CreateSession(session_pb2.CreateSessionRequest(metadata=metadata), metadata=owner("meta")),
        lambda: sessions.PushTurn(session_pb2.PushTurnRequest(session_id=sid, role=common_pb2.ROLE_USER,
                                                              content="x", metadata=metadata), metadata=owner("meta")),
        lambda: sessions.ForkSession(session_pb2.ForkSessionRequest(session_id=sid, keep_turns=0,
                                                                    metadata=metadata), metadata=owner("meta")),
    ):
        code, details = status_of(call)
        assert code == INVALID and "metadata" in details and needle in details, (code, details[:200])
    header = sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid), metadata=owner("meta")).session
    assert header.turn_count == 0


# -- 10. faults: a cancelled stream leaves no error behind ------------------------------------
def cancelled_streams(metrics_port: int) -> float:
    """GenerateStream calls the generation service has counted as CANCELLED."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    for line in body.splitlines():
        if (line.startswith("chatstack_rpc_requests_total{") and 'code="CANCELLED"' in line
                and 'method="GenerationService/GenerateStream"' in line):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_cancelled_streams_leave_no_context_errors_in_the_log(
        generation: generation_pb2_grpc.GenerationServiceStub, generation_service: tuple[str, int],
        log_dir: Path) -> None:
    before = cancelled_streams(generation_service[1])
    for _ in range(5):
        stream = generation.GenerateStream(generation_pb2.GenerateStreamRequest(
            text="count", sampling=generation_pb2.SamplingParams(max_tokens=64, ignore_eos=True)), timeout=30)
        next(stream)
        stream.cancel()
    # Each stream's scope has closed once it is counted (the old reset raised right there).
    wait_until(lambda: cancelled_streams(generation_service[1]) >= before + 5, 10, "5 cancelled streams")
    logs = "".join(p.read_text(errors="replace") for p in log_dir.glob("generation*.log"))
    assert "different Context" not in logs


# -- 9. a conversation of any length keeps working ------------------------------------------------
WORDS = ("the quick brown fox jumps over a lazy dog while seven tired owls count stars "
         "near an old mill by the river and sing").split()


def test_a_hundred_long_turns_fill_both_windows_and_every_turn_is_answered(gateway: tuple[str, int]) -> None:
    """Each user message is ~110 words and max_tokens 16: the reward model's window (512 tokens
    here) fills after a few turns, the generator's (2048) after a few dozen; every turn must still
    be answered, scored and stored (it failed at turn 24 on estimated counts)."""
    with ChatClient(gateway[0], ALICE_KEY, timeout=120) as alice:
        sid, last = "", None
        for turn in range(100):
            message = " ".join(WORDS[(turn + i) % len(WORDS)] for i in range(110))
            last = alice.chat(message, session_id=sid, system_prompt="be brief", max_tokens=16,
                              temperature=1.0, seed=turn)
            sid = last.session_id
            assert last.text and last.assistant_turn_id, turn
        assert last is not None and last.context_truncated
        assert 2048 - 16 - 400 < last.prompt_tokens <= 2048 - 16
        _, turns = alice.history(sid)
        assert len(turns) == 200


def test_a_fork_can_be_given_its_id_so_a_cut_off_caller_can_still_delete_it(
        sessions: session_pb2_grpc.SessionServiceStub) -> None:
    md = owner("forker")
    sid = sessions.CreateSession(session_pb2.CreateSessionRequest(), metadata=md).session.session_id
    new_id = f"fork-of-{sid}"
    fork = sessions.ForkSession(session_pb2.ForkSessionRequest(session_id=sid, new_session_id=new_id), metadata=md)
    assert fork.session.session_id == new_id
    code, _ = status_of(lambda: sessions.ForkSession(
        session_pb2.ForkSessionRequest(session_id=sid, new_session_id=new_id), metadata=md))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    code, details = status_of(lambda: sessions.ForkSession(
        session_pb2.ForkSessionRequest(session_id=sid, new_session_id="bad\n"), metadata=md))
    assert code == INVALID and "new_session_id" in details
