"""The gateway end to end over real services: real Redis, real vLLM engines on the tiny models."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from chatstack.client import ChatClient, collect
from chatstack.core.process import free_port, wait_until
from chatstack.v1 import common_pb2, reward_pb2, reward_pb2_grpc, session_pb2, session_pb2_grpc
from tests.integration.conftest import ALICE_KEY, BOB_KEY, start_gateway
from tests.scrape import engine_idle, metric, metric_labelled

pytestmark = pytest.mark.integration
FAST = {"max_tokens": 8, "temperature": 1.0}


@pytest.fixture(scope="module")
def alice(gateway: tuple[str, int]) -> Iterator[ChatClient]:
    with ChatClient(gateway[0], ALICE_KEY, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def bob(gateway: tuple[str, int]) -> Iterator[ChatClient]:
    with ChatClient(gateway[0], BOB_KEY, timeout=60) as client:
        yield client


def session_state(address: str, sid: str, owner: str = "alice") -> tuple[int, int, list[str]]:
    """(version, turn_count, turn ids) read straight from the session service.

    "Unchanged" means the same turns: a rollback is itself a mutation, and versions only grow
    (winding one back would let a stale expected_version succeed later: the ABA problem)."""
    with grpc.insecure_channel(address) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        md = (("x-chatstack-owner", owner),)
        session = stub.GetSession(session_pb2.GetSessionRequest(session_id=sid), metadata=md).session
        turns = stub.ListTurns(session_pb2.ListTurnsRequest(session_id=sid, page_size=1000), metadata=md).turns
    return session.version, session.turn_count, [t.turn_id for t in turns]


def test_second_turn_prompt_contains_the_first_exchange(alice: ChatClient) -> None:
    first = alice.chat("ka to ri", system_prompt="be terse", echo_prompt=True, **FAST)
    assert first.created and first.text and first.assistant_turn_id
    assert first.prompt == "<s><|system|>\nbe terse<|end|>\n<|user|>\nka to ri<|end|>\n<|assistant|>\n"
    second = alice.chat("sa mo lu", session_id=first.session_id, echo_prompt=True, **FAST)
    assert not second.created and second.session_id == first.session_id
    assert second.prompt == (f"<s><|system|>\nbe terse<|end|>\n<|user|>\nka to ri<|end|>\n"
                             f"<|assistant|>\n{first.text}<|end|>\n<|user|>\nsa mo lu<|end|>\n<|assistant|>\n")
    assert second.context_turns == 3 and not second.context_truncated
    system, turns = alice.history(first.session_id)
    assert system == "be terse"
    assert [(t.role, t.content) for t in turns] == [
        (common_pb2.ROLE_USER, "ka to ri"), (common_pb2.ROLE_ASSISTANT, first.text),
        (common_pb2.ROLE_USER, "sa mo lu"), (common_pb2.ROLE_ASSISTANT, second.text)]
    assert float(turns[1].metadata["reward_score"]) == pytest.approx(first.reward_score)


def test_old_turns_leave_the_context_but_stay_in_history(alice: ChatClient) -> None:
    sid = ""
    for i in range(6):
        result = alice.chat(f"message number {i} ka to ri sa", session_id=sid, context_token_budget=60,
                            echo_prompt=True, **FAST)
        sid = result.session_id
    assert result.context_truncated and result.context_turns < 11
    assert "message number 0" not in result.prompt and "message number 5" in result.prompt
    _, turns = alice.history(sid)
    assert len(turns) == 12 and turns[0].content == "message number 0 ka to ri sa"


def test_default_budget_fits_the_model_window(alice: ChatClient) -> None:
    long_message = "ka to ri sa mo lu pe di " * 25  # ~200 tokens; with the answer it fits the
    sid = ""                                    # reward model's 512-token window
    for _ in range(8):
        result = alice.chat(long_message, session_id=sid, max_tokens=200, temperature=1.0)
        sid = result.session_id
        assert result.prompt_tokens + 200 <= 2048
    assert result.context_truncated


def test_best_of_4_stores_the_candidate_with_the_highest_reward(
    alice: ChatClient, reward_service: tuple[str, int]
) -> None:
    result = alice.chat("ka to ri sa mo", system_prompt="sys", best_of=4, max_tokens=8, temperature=1.0)
    assert len(result.candidates) == 4 and sum(c.chosen for c in result.candidates) == 1
    conversation = [common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content="sys"),
                    common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="ka to ri sa mo")]
    with grpc.insecure_channel(reward_service[0]) as channel:
        stub = reward_pb2_grpc.RewardServiceStub(channel)
        direct = [stub.Score(reward_pb2.ScoreRequest(item=reward_pb2.ScoreItem(
            conversation=conversation, response=c.text))).score for c in result.candidates]
    assert [c.reward_score for c in result.candidates] == pytest.approx(direct, abs=1e-4)
    best = max(range(4), key=lambda i: (direct[i], -i))
    assert result.candidates[best].chosen and result.text == result.candidates[best].text
    _, turns = alice.history(result.session_id)
    assert turns[-1].content == result.candidates[best].text
    assert turns[-1].metadata["best_of"] == "4"


def test_regenerate_undo_and_edit(alice: ChatClient, session_service: tuple[str, int]) -> None:
    first = alice.chat("one", **FAST)
    sid = first.session_id
    second = alice.chat("two", session_id=sid, **FAST)
    again = alice.regenerate(sid, **FAST)
    _, turns = alice.history(sid)
    assert [t.content for t in turns][:3] == ["one", first.text, "two"] and len(turns) == 4
    assert turns[3].turn_id == again.assistant_turn_id != second.assistant_turn_id
    assert again.user_turn_id == turns[2].turn_id
    edited = alice.edit(sid, turns[2].turn_id, "TWO", **FAST)
    assert edited.created and edited.session_id != sid
    _, fork_turns = alice.history(edited.session_id)
    assert [t.content for t in fork_turns][:3] == ["one", first.text, "TWO"] and len(fork_turns) == 4
    assert len(alice.history(sid)[1]) == 4  # the original is untouched
    removed = alice.undo(sid).removed_turns
    assert [t.content for t in removed] == [again.text, "two"]
    assert [t.content for t in alice.history(sid)[1]] == ["one", first.text]


def test_regenerate_sees_the_window_the_answer_it_replaces_saw(alice: ChatClient) -> None:
    """Under a tight budget the replaced answer's tokens are not counted against the window, so
    the regenerated answer is asked with exactly the prompt the first answer was."""
    sid = ""
    for i in range(4):
        sid = alice.chat(f"turn {i} ka to ri sa mo", session_id=sid, context_token_budget=60,
                         **FAST).session_id
    last = alice.chat("the last question lu pe", session_id=sid, context_token_budget=60,
                      echo_prompt=True, max_tokens=24, temperature=1.0)
    again = alice.regenerate(sid, context_token_budget=60, echo_prompt=True, max_tokens=24, temperature=1.0)
    assert last.context_truncated and again.prompt == last.prompt
    assert again.user_turn_id == last.user_turn_id


def test_cancel_mid_stream_leaves_the_session_unchanged_and_aborts_generation(
    alice: ChatClient, session_service: tuple[str, int], generation_service: tuple[str, int]
) -> None:
    sid = alice.chat("before", **FAST).session_id
    # Mid-stream: the engine is decoding the answer, as the engine itself reports (the state this
    # test is about, rather than how many deltas the client has read so far). The tiny random
    # model may sample its end-of-text token within a few dozen tokens (a third of 1,000-token
    # answers end early), faster than the gauge is polled: the service's own in-flight gauge then
    # shows the answer ended (its tokens counted), and the stream is tried again.
    port = generation_service[1]

    def ended(tokens_before: float) -> bool:
        return metric(port, "chatstack_generation_in_flight_requests") == 0 and \
            metric(port, "chatstack_generation_generated_tokens_total") > tokens_before

    for _ in range(5):
        before = session_state(session_service[0], sid)
        aborted = metric(port, "chatstack_generation_aborted_requests_total")
        tokens = metric(port, "chatstack_generation_generated_tokens_total")
        stream = alice.chat_stream("please go on for a long time", session_id=sid, max_tokens=1000)
        assert next(stream).WhichOneof("event") == "session"
        wait_until(lambda t=tokens: metric(port, "chatstack_generation_engine_running_requests") == 1 or ended(t),
                   30, "the answer to be decoding (or to have ended)")
        if not ended(tokens):
            break
        list(stream)  # it ended by itself and is stored: try again
    stream.cancel()
    with pytest.raises(grpc.RpcError) as err:
        next(stream)
    assert err.value.code() == grpc.StatusCode.CANCELLED
    # The rollback runs after the client has gone: wait for it, with a deadline.
    wait_until(lambda: session_state(session_service[0], sid)[1:] == before[1:], 5,
               "the cancelled Chat's user turn to be popped")
    wait_until(lambda: metric(generation_service[1], "chatstack_generation_aborted_requests_total") >= aborted + 1,
               5, "the engine to abort the cancelled generation")
    assert metric(generation_service[1], "chatstack_generation_aborted_requests_total") == aborted + 1
    # The abort is counted before the engine drops the request; its scheduler says so a step later.
    wait_until(lambda: engine_idle(generation_service[1]), 1.0, "the engine to report no running request")


@pytest.mark.parametrize("broken", ["tokenizer", "generation", "reward", "session"])
def test_a_downstream_service_down_is_unavailable_naming_it_and_the_session_is_unchanged(
    broken: str, stack_addresses: dict[str, str], session_service: tuple[str, int], log_dir: Path,
    alice: ChatClient,
) -> None:
    sid = alice.chat("hello", **FAST).session_id
    before = session_state(session_service[0], sid)
    addresses = {**stack_addresses, broken: f"127.0.0.1:{free_port()}"}  # nothing listens there
    proc, address, _, _ = start_gateway(log_dir, name=f"gateway-no-{broken}", **addresses)
    try:
        with ChatClient(address, ALICE_KEY, timeout=30) as client:
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as err:
                client.chat("are you there?", session_id=sid, **FAST)
            assert time.monotonic() - started < 5
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert f"{broken} service unavailable" in err.value.details()
        assert session_state(session_service[0], sid)[1:] == before[1:]
    finally:
        proc.stop()


def test_auth_failures(gateway: tuple[str, int], alice: ChatClient, bob: ChatClient) -> None:
    sid = alice.chat("private", **FAST).session_id
    with grpc.insecure_channel(gateway[0]) as channel:
        from chatstack.v1 import chat_pb2, chat_pb2_grpc
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        with pytest.raises(grpc.RpcError) as none:
            collect(stub.Chat(chat_pb2.ChatRequest(message="hi"), timeout=10))
        assert none.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with ChatClient(gateway[0], "not-a-key", timeout=10) as wrong, pytest.raises(grpc.RpcError) as err:
        wrong.chat("hi", **FAST)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    for attempt in (lambda: bob.chat("mine now", session_id=sid, **FAST), lambda: bob.history(sid),
                    lambda: bob.undo(sid), lambda: bob.regenerate(sid, **FAST),
                    lambda: bob.delete_session(sid), lambda: bob.get_session(sid)):
        with pytest.raises(grpc.RpcError) as err:
            attempt()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert sid not in {s.session_id for s in bob.list_sessions().sessions}
    assert len(alice.history(sid)[1]) == 2


def test_bad_chat_input(alice: ChatClient) -> None:
    for kwargs, needle in [({"message": "  "}, "message: empty"),
                           ({"message": "x", "best_of": 99}, "options.best_of"),
                           ({"message": "x", "max_tokens": 100000}, "options.max_tokens")]:
        with pytest.raises(grpc.RpcError) as err:
            message = kwargs.pop("message")
            alice.chat(str(message), **kwargs)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        alice.chat("x", session_id="no-such-session", **FAST)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_gateway_metrics_have_stages_and_best_of_promtool_clean(gateway: tuple[str, int], alice: ChatClient) -> None:
    alice.chat("metrics please", best_of=2, **FAST)
    body = urllib.request.urlopen(f"http://127.0.0.1:{gateway[1]}/metrics").read()
    for stage in ("session_read", "template", "ttft", "generation", "reward", "session_write", "total"):
        assert f'chatstack_gateway_stage_duration_seconds_count{{stage="{stage}",transport="grpc"}}'.encode() in body
    assert b'chatstack_gateway_best_of_requests_total{n="2"}' in body
    check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert (check.returncode, check.stdout, check.stderr) == (0, b"", b"")


def test_single_answer_scoring_sync_async_and_off(
    stack_addresses: dict[str, str], reward_service: tuple[str, int], log_dir: Path, alice: ChatClient,
) -> None:
    """sync scores before the final message; async stores the answer first and annotates its turn
    with the same score the reward service gives; off never scores."""
    from chatstack.v1 import chat_pb2

    synced = alice.chat("score me now", system_prompt="sys", **FAST)
    assert synced.reward_status == chat_pb2.REWARD_STATUS_SCORED
    assert alice.history(synced.session_id)[1][-1].metadata["reward_score"] == repr(synced.reward_score)
    for mode, status in (("async", chat_pb2.REWARD_STATUS_PENDING), ("off", chat_pb2.REWARD_STATUS_OFF)):
        proc, address, metrics_port, _ = start_gateway(
            log_dir, name=f"gateway-scoring-{mode}", extra_flags=("--single-answer-scoring", mode),
            **stack_addresses)
        try:
            with ChatClient(address, ALICE_KEY, timeout=60) as client:
                result = client.chat("score me later", system_prompt="sys", **FAST)
                assert (result.reward_status, result.reward_score) == (status, 0.0)
                assert result.timings.reward_seconds == 0.0  # the final message did not wait
                if mode == "async":
                    sid = result.session_id
                    wait_until(lambda: "reward_score" in client.history(sid)[1][-1].metadata,  # noqa: B023
                               30, "the deferred score to reach the stored turn")
                    assert metric_labelled(metrics_port, "chatstack_gateway_deferred_scores_total",
                                           'outcome="scored"') == 1
                stored = client.history(result.session_id)[1][-1]
                assert stored.turn_id == result.assistant_turn_id and stored.content == result.text
            if mode == "off":
                assert "reward_score" not in stored.metadata
                continue
            conversation = [common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content="sys"),
                            common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="score me later")]
            with grpc.insecure_channel(reward_service[0]) as channel:
                direct = reward_pb2_grpc.RewardServiceStub(channel).Score(reward_pb2.ScoreRequest(
                    item=reward_pb2.ScoreItem(conversation=conversation, response=result.text))).score
            assert float(stored.metadata["reward_score"]) == pytest.approx(direct, abs=1e-4)
        finally:
            assert proc.stop() == 0, proc.tail()

