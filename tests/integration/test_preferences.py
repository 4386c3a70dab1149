"""Preference capture over the real stack (the RLHF data loop): feedback, best-of, regenerate, edit
and undo events in the session store's Redis Stream; capture off stores nothing; a deleted
session's events go with it; acknowledged events survive a Redis kill (AOF); the export is
training data TRL reads, and a reward model trained on it learns the preference."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import openai
import pytest

from chatstack.client import ChatClient
from chatstack.core.process import free_port, wait_until
from chatstack.core.redis_process import RedisProcess
from chatstack.preferences.export import ExportSettings, export, read_events
from chatstack.v1 import common_pb2, preference_pb2, session_pb2, session_pb2_grpc
from tests.integration.conftest import ALICE_KEY, BOB_KEY
from tests.scrape import metric_labelled
from tests.stack_fixtures import GatewayProcess, start_gateway, start_session_service

pytestmark = pytest.mark.integration
Event = preference_pb2.PreferenceEvent
K = preference_pb2


@pytest.fixture(scope="module")
def capture_gateway(stack_addresses: dict[str, str], log_dir: Path) -> Iterator[GatewayProcess]:
    """A second gateway over the same stack, with capture_preferences on."""
    started = start_gateway(log_dir, name="gateway-capture", extra_flags=("--capture-preferences",),
                            **stack_addresses)
    yield started
    assert started.proc.stop() == 0, started.proc.tail()


@pytest.fixture(scope="module")
def alice(capture_gateway: GatewayProcess) -> Iterator[ChatClient]:
    with ChatClient(capture_gateway.address, ALICE_KEY) as client:
        yield client


def events_of(session_address: str, session_id: str, kind: int | None = None) -> list[Event]:
    """Stored events of one session (optionally one kind), oldest first."""
    events = read_events(ExportSettings(session_address, Path("-")))
    return [e for e in events if e.session_id == session_id and (kind is None or e.kind == kind)]


def wait_for_event(session_address: str, session_id: str, kind: int) -> Event:
    """The session's event of `kind`, once the gateway's background write landed."""
    found: list[Event] = []

    def landed() -> bool:
        found[:] = events_of(session_address, session_id, kind)
        return bool(found)

    wait_until(landed, 30, f"a {K.PreferenceKind.Name(kind)} event of {session_id}", interval=0.1)  # type: ignore[arg-type]
    assert len(found) == 1, found
    return found[0]


def code_of(call: object, *args: object, **kwargs: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call(*args, **kwargs)  # type: ignore[operator]
    return err.value.code()  # type: ignore[no-any-return]


def test_feedback_is_stored_owner_checked_and_replaced(alice: ChatClient, capture_gateway: GatewayProcess,
                                                       session_service: tuple[str, int]) -> None:
    answer = alice.chat("ka to ri", system_prompt="be terse", max_tokens=8)
    first = alice.feedback(answer.session_id, answer.assistant_turn_id, K.RATING_UP, reason="clear")
    [event] = events_of(session_service[0], answer.session_id, K.PREFERENCE_KIND_FEEDBACK)
    assert (event.event_id, event.owner, event.turn_id, event.user_turn_id) == (
        first.event_id, "alice", answer.assistant_turn_id, answer.user_turn_id)
    assert (event.rating, event.reason, event.candidates[0].text) == (K.RATING_UP, "clear", answer.text)
    assert [(m.role, m.content) for m in event.prompt] == [
        (common_pb2.ROLE_SYSTEM, "be terse"), (common_pb2.ROLE_USER, "ka to ri")]
    assert "@" in event.generator_model and "@" in event.reward_model  # name@version
    assert event.create_time.seconds > 0 and not first.replaced
    # A later feedback on the same turn replaces the earlier.
    second = alice.feedback(answer.session_id, answer.assistant_turn_id, K.RATING_DOWN)
    [event] = events_of(session_service[0], answer.session_id, K.PREFERENCE_KIND_FEEDBACK)
    assert second.replaced and (event.event_id, event.rating) == (second.event_id, K.RATING_DOWN)
    # Another owner's turn, a user turn, a missing session: NOT_FOUND; bad input: INVALID_ARGUMENT.
    with ChatClient(capture_gateway.address, BOB_KEY) as bob:
        assert code_of(bob.feedback, answer.session_id, answer.assistant_turn_id, K.RATING_UP) \
            == grpc.StatusCode.NOT_FOUND
    assert code_of(alice.feedback, answer.session_id, answer.user_turn_id, K.RATING_UP) == grpc.StatusCode.NOT_FOUND
    assert code_of(alice.feedback, "missing", answer.assistant_turn_id, K.RATING_UP) == grpc.StatusCode.NOT_FOUND
    assert code_of(alice.feedback, answer.session_id, answer.assistant_turn_id) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(alice.feedback, answer.session_id, answer.assistant_turn_id, K.RATING_UP,
                   preferred_candidate=1) == grpc.StatusCode.INVALID_ARGUMENT  # not a best-of answer
    assert code_of(alice.feedback, answer.session_id, answer.assistant_turn_id, K.RATING_UP,
                   reason="x" * 3000) == grpc.StatusCode.INVALID_ARGUMENT
    assert len(events_of(session_service[0], answer.session_id)) == 1


def test_best_of_4_keeps_every_candidate_with_its_reward(alice: ChatClient, session_service: tuple[str, int],
                                                         tmp_path: Path) -> None:
    answer = alice.chat("sa mo lu", max_tokens=8, best_of=4, temperature=1.0, seed=7)
    event = wait_for_event(session_service[0], answer.session_id, K.PREFERENCE_KIND_BEST_OF)
    assert len(event.candidates) == 4 and all(c.HasField("reward") for c in event.candidates)
    assert [c.text for c in event.candidates] == [c.text for c in answer.candidates]
    assert [c.reward for c in event.candidates] == pytest.approx([c.reward_score for c in answer.candidates])
    [kept] = [c for c in event.candidates if c.kept]
    assert (kept.text, kept.turn_id) == (answer.text, answer.assistant_turn_id)
    assert event.sampling["best_of"] == "4" and event.sampling["seed"] == "7"
    assert event.reward_model and event.generator_model
    # The user prefers another candidate: the export pairs it above each of the others.
    alice.feedback(answer.session_id, answer.assistant_turn_id, preferred_candidate=2)
    rows = [r for r in _pairs(session_service[0], tmp_path) if r["session_id"] == answer.session_id]
    assert {r["chosen"][0]["content"] for r in rows} == {answer.candidates[2].text}
    assert all(r["signal"] == "feedback" for r in rows)


def test_regenerate_edit_and_undo_each_leave_their_event(alice: ChatClient,
                                                         session_service: tuple[str, int]) -> None:
    first = alice.chat("pe di", max_tokens=8, temperature=1.0, seed=1)
    again = alice.regenerate(first.session_id, max_tokens=8, temperature=1.0, seed=2)
    regenerate = wait_for_event(session_service[0], first.session_id, K.PREFERENCE_KIND_REGENERATE)
    replaced, new = regenerate.candidates
    assert (replaced.text, replaced.turn_id, replaced.kept) == (first.text, first.assistant_turn_id, False)
    assert (new.text, new.turn_id, new.kept) == (again.text, again.assistant_turn_id, True)

    edited = alice.edit(first.session_id, first.user_turn_id, "ka ri", max_tokens=8)
    edit = wait_for_event(session_service[0], first.session_id, K.PREFERENCE_KIND_EDIT)
    assert (edit.original_message, edit.edited_message, edit.fork_session_id) == (
        "pe di", "ka ri", edited.session_id)
    assert edit.user_turn_id == first.user_turn_id and edit.turn_id == edited.assistant_turn_id

    alice.undo(first.session_id)
    undo = wait_for_event(session_service[0], first.session_id, K.PREFERENCE_KIND_UNDO)
    assert [c.text for c in undo.candidates] == [again.text] and undo.turn_id == again.assistant_turn_id
    assert [m.content for m in undo.prompt] == ["pe di"]


def test_capture_off_stores_nothing(gateway_process: GatewayProcess, session_service: tuple[str, int]) -> None:
    with ChatClient(gateway_process.address, ALICE_KEY) as client:
        answer = client.chat("lu pe", max_tokens=8, best_of=2, temperature=1.0)
        client.regenerate(answer.session_id, max_tokens=8)
        client.undo(answer.session_id)
        top = client.chat("lu pe", session_id=answer.session_id, max_tokens=8)
        assert code_of(client.feedback, answer.session_id, top.assistant_turn_id, K.RATING_UP) \
            == grpc.StatusCode.FAILED_PRECONDITION
    assert events_of(session_service[0], answer.session_id) == []  # nothing was even scheduled


def test_deleting_a_session_deletes_its_events(alice: ChatClient, session_service: tuple[str, int]) -> None:
    doomed = alice.chat("mo ka", max_tokens=8, best_of=2, temperature=1.0)
    kept = alice.chat("mo ka", max_tokens=8)
    alice.feedback(doomed.session_id, doomed.assistant_turn_id, K.RATING_UP)
    alice.feedback(kept.session_id, kept.assistant_turn_id, K.RATING_DOWN)
    wait_for_event(session_service[0], doomed.session_id, K.PREFERENCE_KIND_BEST_OF)
    alice.delete_session(doomed.session_id)
    assert events_of(session_service[0], doomed.session_id) == []
    assert len(events_of(session_service[0], kept.session_id)) == 1


def test_feedback_over_the_http_api(capture_gateway: GatewayProcess, session_service: tuple[str, int]) -> None:
    base = f"http://127.0.0.1:{capture_gateway.http_port}/v1"
    with openai.OpenAI(base_url=base, api_key=ALICE_KEY, max_retries=0) as client:
        model = client.models.list().data[0].id
        response = client.responses.create(model=model, input="ri sa", max_output_tokens=8)
        reply = client.post(f"/responses/{response.id}/feedback", cast_to=object,
                            body={"rating": "down", "reason": "too short"})
        assert reply["object"] == "response.feedback" and reply["replaced"] is False  # type: ignore[index]
        with pytest.raises(openai.BadRequestError):
            client.post(f"/responses/{response.id}/feedback", cast_to=object, body={"rating": "meh"})
        with pytest.raises(openai.BadRequestError):
            client.post(f"/responses/{response.id}/feedback", cast_to=object, body={"preferred_candidate": 1})
    with openai.OpenAI(base_url=base, api_key=BOB_KEY, max_retries=0) as bob, \
            pytest.raises(openai.NotFoundError):
        bob.post(f"/responses/{response.id}/feedback", cast_to=object, body={"rating": "up"})
    session = response.conversation.id.removeprefix("conv_")  # type: ignore[union-attr]
    [event] = events_of(session_service[0], session, K.PREFERENCE_KIND_FEEDBACK)
    assert (event.rating, event.reason, event.candidates[0].text) == (K.RATING_DOWN, "too short",
                                                                      response.output_text)


def test_events_are_counted_in_metrics(alice: ChatClient, capture_gateway: GatewayProcess,
                                       session_service: tuple[str, int]) -> None:
    answer = alice.chat("ta ka", max_tokens=8)
    alice.feedback(answer.session_id, answer.assistant_turn_id, K.RATING_UP)
    assert metric_labelled(capture_gateway.metrics_port, "chatstack_gateway_preference_events_total",
                           'kind="feedback",outcome="recorded"') >= 1
    assert metric_labelled(session_service[1], "chatstack_session_preference_events_total", 'kind="feedback"') >= 1


def test_acknowledged_events_survive_kill_9_with_aof(tmp_path: Path, log_dir: Path) -> None:
    server = RedisProcess(free_port(), tmp_path / "redis", appendfsync="always").start()
    proc, address, _ = start_session_service(server.url, log_dir, name="session-prefs-durable")
    md = (("x-chatstack-owner", "carol"),)
    try:
        with grpc.insecure_channel(address) as channel:
            stub = session_pb2_grpc.SessionServiceStub(channel)
            sid = stub.CreateSession(session_pb2.CreateSessionRequest(), metadata=md, timeout=10).session.session_id
            acked = [stub.RecordPreference(session_pb2.RecordPreferenceRequest(event=Event(
                kind=K.PREFERENCE_KIND_UNDO, session_id=sid, candidates=[
                    K.PreferenceCandidate(text=f"answer {i}")])), metadata=md, timeout=10).event_id
                for i in range(50)]
            server.kill()  # SIGKILL right after the last acknowledgement
            server.start()  # same port, same dir: replays the AOF
        assert [e.event_id for e in read_events(ExportSettings(address, Path("-")))] == acked
    finally:
        proc.stop()
        server.stop()


def _pairs(session_address: str, tmp: Path, **filters: object) -> list[dict]:
    out = tmp / "pairs.jsonl"
    export(ExportSettings(session_address, out, "pairs", **filters))  # type: ignore[arg-type]
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_the_chat_repl_rates_its_last_answer(alice: ChatClient, session_service: tuple[str, int],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from chatstack.chat_cli import ChatRepl

    repl = ChatRepl(alice, {"max_tokens": 8, "best_of": 2, "temperature": 1.0}, "")
    repl.handle("/good")
    assert "(no answer to rate yet)" in capsys.readouterr().out
    repl.handle("ka to")
    repl.handle("/bad rambles")
    repl.handle("/prefer 2 the other one")
    assert capsys.readouterr().out.endswith("(feedback recorded)\n(feedback replaced)\n")
    [event] = events_of(session_service[0], repl.session_id, K.PREFERENCE_KIND_FEEDBACK)
    assert (event.turn_id, event.preferred_candidate, event.reason) == (repl.last_answer, 1, "the other one")


@pytest.mark.parametrize("request_", [
    session_pb2.ExportPreferencesRequest(kinds=[2145]),  # type: ignore[list-item]
    session_pb2.ExportPreferencesRequest(since={"seconds": 1, "nanos": 1_542_989_656}),
    session_pb2.ExportPreferencesRequest(since={"seconds": 9_223_372_036_854_775_806}),
    session_pb2.ExportPreferencesRequest(after_event_id="99999999999999999999999-0"),
    session_pb2.ExportPreferencesRequest(after_event_id="١٢٣-0"),  # digits, not ASCII ones
], ids=["unknown-kind", "bad-nanos", "after-year-9999", "id-beyond-uint64", "non-ascii-digits"])
def test_export_refuses_what_is_not_a_filter(session_stub: session_pb2_grpc.SessionServiceStub,
                                             request_: session_pb2.ExportPreferencesRequest) -> None:
    operator = (("x-chatstack-owner", "operator"),)
    assert code_of(lambda: list(session_stub.ExportPreferences(request_, metadata=operator, timeout=10))) \
        == grpc.StatusCode.INVALID_ARGUMENT


def test_export_needs_the_callers_identity(session_stub: session_pb2_grpc.SessionServiceStub) -> None:
    request = session_pb2.ExportPreferencesRequest()
    assert code_of(lambda: list(session_stub.ExportPreferences(request, timeout=10))) \
        == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("kind", [0, 99, -1])
def test_record_refuses_an_unknown_kind(session_stub: session_pb2_grpc.SessionServiceStub, kind: int) -> None:
    md = (("x-chatstack-owner", "dave"),)
    sid = session_stub.CreateSession(session_pb2.CreateSessionRequest(), metadata=md, timeout=10).session.session_id
    request = session_pb2.RecordPreferenceRequest(event=Event(kind=kind, session_id=sid))  # type: ignore[arg-type]
    assert code_of(session_stub.RecordPreference, request, metadata=md, timeout=10) \
        == grpc.StatusCode.INVALID_ARGUMENT
