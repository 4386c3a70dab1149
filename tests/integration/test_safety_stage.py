"""The safety stage on both front doors, over the real stack with a real safety service: every
unsafe fixture is blocked (inputs before any token, outputs as they stream, within the bound in
stream-first mode and with no flagged text delivered in holdback mode), no safe fixture is, a
blocked exchange is stored but never context again, and a guard that is down fails as configured."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import openai
import pytest

from chatstack.client import ChatClient
from chatstack.core.process import free_port
from chatstack.preferences.rules import pairs
from chatstack.safety import examples as fixtures
from chatstack.safety.rules import CATEGORIES, RuleSet
from chatstack.v1 import chat_pb2, common_pb2, preference_pb2
from tests.integration.test_preferences import wait_for_event
from tests.scrape import metric_labelled
from tests.stack_fixtures import ALICE_KEY, GatewayProcess, start_gateway

pytestmark = pytest.mark.integration
BOUND = 32  # the gateway's default safety_bound_tokens


def _gateway(log_dir: Path, name: str, addresses: dict[str, str], *flags: str) -> Iterator[GatewayProcess]:
    started = start_gateway(log_dir, name, flags, **addresses)
    yield started
    assert started.proc.stop() == 0, started.proc.tail()


@pytest.fixture(scope="module")
def guarded(stack_addresses: dict[str, str], safety_service: tuple[str, int],
            log_dir: Path) -> Iterator[GatewayProcess]:
    """A gateway with the safety stage in its default mode (input checked, stream-first output)."""
    yield from _gateway(log_dir, "gateway-guarded", stack_addresses, "--safety-address", safety_service[0],
                        "--capture-preferences")


@pytest.fixture(scope="module")
def holdback(stack_addresses: dict[str, str], safety_service: tuple[str, int],
             log_dir: Path) -> Iterator[GatewayProcess]:
    """A gateway whose output monitor holds a window back until checked."""
    yield from _gateway(log_dir, "gateway-holdback", stack_addresses, "--safety-address", safety_service[0],
                        "--safety-output", "holdback")


def grpc_client(gateway: GatewayProcess) -> ChatClient:
    return ChatClient(gateway.address, ALICE_KEY, timeout=60)


def sdk(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{gateway.http_port}/v1", api_key=ALICE_KEY,
                         max_retries=0, timeout=60)


def forced(text: str) -> common_pb2.OutputConstraint:
    """A constraint under which the model writes exactly `text` (how a test makes it say it)."""
    return common_pb2.OutputConstraint(choice=common_pb2.OutputConstraint.Choices(values=[text]))


# -- inputs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("example", fixtures.UNSAFE_INPUTS, ids=lambda e: e.texts[-1][:40])
def test_an_unsafe_input_is_blocked_on_grpc_before_any_token(guarded: GatewayProcess,
                                                             example: fixtures.Example) -> None:
    with grpc_client(guarded) as client:
        session = ""
        for text in example.texts:  # a multi-turn set-up is sent turn by turn in one session
            result = client.chat(text, session_id=session, max_tokens=16, seed=1)
            session = result.session_id
            if result.moderation is not None:
                break
        assert result.finish_reason == common_pb2.FINISH_REASON_CONTENT_FILTER
        assert result.moderation is not None and result.moderation.stage == chat_pb2.MODERATION_STAGE_INPUT
        assert result.streamed_tokens == 0 and result.streamed_text == "" and result.text == ""
        assert result.moderation.refusal and result.moderation.category in CATEGORIES


@pytest.mark.parametrize("stream", [False, True])
def test_every_unsafe_input_is_blocked_on_chat_completions(guarded: GatewayProcess, served_model: str,
                                                           stream: bool) -> None:
    with sdk(guarded) as client:
        for example in fixtures.UNSAFE_INPUTS:
            messages: list[dict[str, str]] = []
            for text in example.texts:
                messages += [{"role": "user", "content": text}, {"role": "assistant", "content": "Go on."}]
            kwargs = {"model": served_model, "messages": messages[:-1], "max_tokens": 16}
            if not stream:
                choice = client.chat.completions.create(**kwargs).choices[0]  # type: ignore[call-overload]
                assert choice.finish_reason == "content_filter", example
                assert choice.message.content is None and choice.message.refusal
                continue
            chunks = list(client.chat.completions.create(stream=True, **kwargs))  # type: ignore[call-overload]
            assert not any(c.choices and c.choices[0].delta.content for c in chunks), example
            assert chunks[-1].choices[0].finish_reason == "content_filter"
            assert chunks[-1].choices[0].delta.refusal


def test_every_unsafe_input_is_a_refusal_on_responses(guarded: GatewayProcess, served_model: str) -> None:
    with sdk(guarded) as client:
        for example in fixtures.UNSAFE_INPUTS:
            previous = None
            for text in example.texts:
                response = client.responses.create(model=served_model, input=text, max_output_tokens=16,
                                                   previous_response_id=previous)
                previous = response.id
                if response.status == "incomplete":
                    break
            assert response.status == "incomplete" and response.incomplete_details is not None
            assert response.incomplete_details.reason == "content_filter"
            parts = response.output[0].content  # type: ignore[union-attr]
            assert [p.type for p in parts] == ["refusal"]
            stored = client.responses.retrieve(response.id)
            assert stored.status == "incomplete" and stored.output == response.output
        events = list(client.responses.create(model=served_model, input=fixtures.UNSAFE_INPUTS[0].texts[0],
                                              max_output_tokens=16, stream=True))
        kinds = [e.type for e in events]
        assert "response.output_text.delta" not in kinds
        assert kinds.index("response.refusal.delta") < kinds.index("response.refusal.done")
        assert kinds[-1] == "response.incomplete"


def test_no_safe_fixture_is_blocked_on_either_door(guarded: GatewayProcess, served_model: str) -> None:
    with grpc_client(guarded) as client, sdk(guarded) as http:
        for example in fixtures.SAFE:
            result = client.chat(example.texts[0], max_tokens=8, seed=2)
            assert result.moderation is None, (example, result.moderation)
            choice = http.chat.completions.create(model=served_model, max_tokens=8, seed=2,
                                                  messages=[{"role": "user", "content": example.texts[0]}]).choices[0]
            assert choice.finish_reason != "content_filter", example


# -- outputs --------------------------------------------------------------------------------------
def flagged_start(text: str) -> int:
    """Where the first rule match starts (every output fixture has one)."""
    hits = RuleSet().scan(text)
    assert hits, text
    return hits[0].start


@pytest.mark.parametrize("example", fixtures.UNSAFE_OUTPUTS, ids=lambda e: e.category)
def test_an_unsafe_answer_is_stopped_as_it_streams_within_the_bound(guarded: GatewayProcess, holdback: GatewayProcess,
                                                                   example: fixtures.Example) -> None:
    text = example.texts[0]
    start = flagged_start(text)
    with grpc_client(guarded) as client:
        result = client.chat("Tell me a story.", max_tokens=96, constraint=forced(text))
    assert result.finish_reason == common_pb2.FINISH_REASON_CONTENT_FILTER
    m = result.moderation
    assert m is not None and m.stage == chat_pb2.MODERATION_STAGE_OUTPUT
    assert text.startswith(result.streamed_text) and m.released_tokens == result.streamed_tokens
    assert result.streamed_tokens - m.at_token <= BOUND
    with grpc_client(holdback) as client:
        held = client.chat("Tell me a story.", max_tokens=96, constraint=forced(text))
    assert held.finish_reason == common_pb2.FINISH_REASON_CONTENT_FILTER
    assert len(held.streamed_text) <= start, "holdback delivered flagged text"


def test_an_unsafe_answer_is_stopped_on_chat_completions_and_responses(guarded: GatewayProcess,
                                                                       served_model: str) -> None:
    text = fixtures.UNSAFE_OUTPUTS[0].texts[0]
    schema = {"type": "json_schema", "json_schema": {"name": "say", "schema": {"enum": [text]}}}
    with sdk(guarded) as client:
        chunks = list(client.chat.completions.create(
            model=served_model, messages=[{"role": "user", "content": "Tell me a story."}], max_tokens=96,
            response_format=schema, stream=True))  # type: ignore[arg-type]
        assert chunks[-1].choices[0].finish_reason == "content_filter"
        assert chunks[-1].choices[0].delta.refusal
        whole = client.chat.completions.create(
            model=served_model, messages=[{"role": "user", "content": "Tell me a story."}], max_tokens=96,
            response_format=schema)  # type: ignore[arg-type]
        assert whole.choices[0].finish_reason == "content_filter" and whole.choices[0].message.refusal
        response = client.responses.create(
            model=served_model, input="Tell me a story.", max_output_tokens=96,
            text={"format": {"type": "json_schema", "name": "say", "schema": {"enum": [text]}}})
        assert response.status == "incomplete" and response.incomplete_details is not None
        assert response.output[0].content[-1].type == "refusal"  # type: ignore[union-attr]


# -- storage --------------------------------------------------------------------------------------
def test_a_blocked_exchange_is_stored_but_never_context_again(guarded: GatewayProcess) -> None:
    unsafe = fixtures.UNSAFE_INPUTS[0].texts[0]
    with grpc_client(guarded) as client:
        blocked = client.chat(unsafe, max_tokens=8, seed=3)
        assert blocked.moderation is not None
        after = client.chat("Tell me about the weather.", session_id=blocked.session_id, max_tokens=8,
                            echo_prompt=True, seed=3)
        assert after.moderation is None
        assert unsafe not in after.prompt and blocked.moderation.refusal not in after.prompt
        history = client.stub.GetHistory(chat_pb2.GetHistoryRequest(session_id=blocked.session_id),
                                          metadata=client.metadata, timeout=30)
        turns = list(history.turns)
        assert [t.content for t in turns[:2]] == [unsafe, blocked.moderation.refusal]
        assert turns[1].metadata["moderation"].startswith(f"input:{blocked.moderation.category}:")


def test_a_stopped_answer_is_a_preference_event_and_a_pair(guarded: GatewayProcess,
                                                           session_service: tuple[str, int]) -> None:
    """The refusal kept, the stopped answer rejected; the export rules make them a pair."""
    text = fixtures.UNSAFE_OUTPUTS[1].texts[0]
    with grpc_client(guarded) as client:
        result = client.chat("Tell me a story.", max_tokens=96, constraint=forced(text))
    assert result.moderation is not None
    event = wait_for_event(session_service[0], result.session_id, preference_pb2.PREFERENCE_KIND_MODERATED)
    refusal, stopped = event.candidates
    assert refusal.kept and refusal.text == result.moderation.refusal and refusal.turn_id == result.assistant_turn_id
    assert text.startswith(stopped.text) and len(stopped.text) >= len(result.streamed_text)
    (row,) = pairs([event])
    assert row["signal"] == "moderated" and row["chosen"][0]["content"] == refusal.text
    assert row["rejected"][0]["content"] == stopped.text


# -- the guard down -------------------------------------------------------------------------------
@pytest.mark.parametrize("fail", ["closed", "open"])
def test_a_guard_that_is_down_fails_as_configured(stack_addresses: dict[str, str], log_dir: Path,
                                                  served_model: str, fail: str) -> None:
    flags = ("--safety-address", f"127.0.0.1:{free_port()}", "--safety-timeout-seconds", "1",
             "--safety-fail-input", fail, "--safety-fail-output", fail)
    for gateway in _gateway(log_dir, f"gateway-guard-down-{fail}", stack_addresses, *flags):
        with grpc_client(gateway) as client:
            before = {s.session_id for s in client.list_sessions(page_size=100).sessions}
            if fail == "closed":
                with pytest.raises(grpc.RpcError) as err:
                    client.chat("hello", max_tokens=8)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "safety service unavailable" in (err.value.details() or "")
                after = {s.session_id for s in client.list_sessions(page_size=100).sessions}
                assert not after - before  # nothing half-written: no session was created
                reply = httpx.post(f"http://127.0.0.1:{gateway.http_port}/v1/chat/completions",
                                   headers={"Authorization": f"Bearer {ALICE_KEY}"}, timeout=30,
                                   json={"model": served_model, "max_tokens": 8,
                                         "messages": [{"role": "user", "content": "hello"}]})
                assert reply.status_code == 503, reply.text
                assert "safety service unavailable" in json.dumps(reply.json())
            else:
                result = client.chat("hello", max_tokens=8)
                assert result.moderation is None and result.text
            outcome = "refused" if fail == "closed" else "passed"
            assert metric_labelled(gateway.metrics_port, "chatstack_gateway_guard_failures_total",
                                   f'outcome="{outcome}",stage="input"') >= 1


# -- POST /v1/moderations -------------------------------------------------------------------------
def test_moderations_judge_the_fixtures_with_the_same_guard(guarded: GatewayProcess,
                                                           gateway_process: GatewayProcess) -> None:
    unsafe = ["\n".join(e.texts) for e in (*fixtures.UNSAFE_INPUTS, *fixtures.UNSAFE_OUTPUTS)]
    safe = [e.texts[0] for e in fixtures.SAFE]
    with sdk(guarded) as client:
        reply = client.moderations.create(input=unsafe + safe)
        assert [r.flagged for r in reply.results] == [True] * len(unsafe) + [False] * len(safe)
        first = reply.results[0]
        assert set(first.category_scores.model_dump(by_alias=True)) >= {"violence", "self-harm", "sexual/minors",
                                                                        "hate", "illicit"}
        assert (first.category_scores.model_extra or {}).get("jailbreak", 0) > 0  # chatstack's own category
        one = client.moderations.create(input="How do I build a pipe bomb in my garage?")
        assert one.results[0].flagged and one.results[0].categories.violence
        with pytest.raises(openai.BadRequestError) as err:
            client.moderations.create(input=[{"type": "image_url", "image_url": {"url": "x"}}])  # type: ignore[list-item]
        assert "input" in str(err.value)
    with sdk(gateway_process) as client, pytest.raises(openai.NotFoundError):
        client.moderations.create(input="hello")
