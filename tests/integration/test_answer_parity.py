"""One answer stage behind every front door: the same request through gRPC Chat, OpenAI chat
completions and OpenAI Responses gives the same answer, the same reward and the same stage
metrics (seeded sampling, the real stack on loopback)."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable
from typing import Any

import openai
import pytest

from chatstack.client import ChatClient
from tests.integration.conftest import ALICE_KEY
from tests.stack_fixtures import GatewayProcess

pytestmark = pytest.mark.integration

SYSTEM, MESSAGE = "You are terse.", "Say hello."
ANSWER_STAGES = {"template", "ttft", "generation", "reward", "total"}  # every door's
SESSION_STAGES = {"session_read", "session_write"}  # the doors that store the exchange


def stage_counts(metrics_port: int) -> dict[tuple[str, str], float]:
    """chatstack_gateway_stage_duration_seconds observations by (stage, transport)."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    found = re.findall(r'^chatstack_gateway_stage_duration_seconds_count\{stage="(\w+)",transport="(\w+)"\} '
                       r"([-+\d.e]+)$", body, re.M)
    return {(stage, transport): float(value) for stage, transport, value in found}


def stages_of(metrics_port: int, call: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """What `call` returned, and the stages it recorded (stage -> observations added)."""
    before = stage_counts(metrics_port)
    result = call()
    after = stage_counts(metrics_port)
    added = {stage: value - before.get((stage, transport), 0.0)
             for (stage, transport), value in after.items() if value > before.get((stage, transport), 0.0)}
    return result, added


@pytest.mark.parametrize("sampling", [
    pytest.param({"temperature": 1.0, "seed": 11, "best_of": 3}, id="best-of-3-ranked"),
    pytest.param({"temperature": 0.0, "best_of": 4}, id="greedy-best-of-answers-once"),
    pytest.param({"temperature": 1.0, "seed": 5}, id="one-answer"),
])
def test_grpc_chat_chat_completions_and_responses_answer_alike(
        openai_sdk: openai.OpenAI, served_model: str, gateway_process: GatewayProcess,
        sampling: dict[str, Any]) -> None:
    metrics = gateway_process.metrics_port
    extra = {k: v for k, v in sampling.items() if k != "temperature"}
    with ChatClient(gateway_process.address, ALICE_KEY, timeout=120) as grpc_client:
        chat, chat_stages = stages_of(metrics, lambda: grpc_client.chat(
            MESSAGE, system_prompt=SYSTEM, max_tokens=12, **sampling))
    completion, completion_stages = stages_of(metrics, lambda: openai_sdk.chat.completions.create(
        model=served_model, messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": MESSAGE}],
        max_tokens=12, temperature=sampling["temperature"], extra_body=extra))
    response, response_stages = stages_of(metrics, lambda: openai_sdk.responses.create(
        model=served_model, instructions=SYSTEM, input=MESSAGE, max_output_tokens=12,
        temperature=sampling["temperature"], extra_body=extra))

    # the same answer, with the same reward (a stateless single answer is not scored unless
    # best_of asks for rewards: there is nothing to store a score in)
    assert chat.text == completion.choices[0].message.content == response.output_text
    assert response.model_extra["reward"] == pytest.approx(chat.reward_score, abs=1e-5)
    scored_stateless = "best_of" in sampling
    extension = completion.choices[0].model_extra or {}
    if scored_stateless:
        assert extension["reward"] == pytest.approx(chat.reward_score, abs=1e-5)
    else:
        assert "reward" not in extension
    ranked = sampling.get("best_of", 1) > 1 and sampling["temperature"] > 0
    assert len(chat.candidates) == (sampling["best_of"] if ranked else 0)
    assert chat.usage.completion_tokens == completion.usage.completion_tokens == response.usage.output_tokens

    # the same stages, each once per call: the answer's on every door, the session's where it is stored
    assert chat_stages == response_stages == dict.fromkeys(ANSWER_STAGES | SESSION_STAGES, 1.0)
    assert completion_stages == dict.fromkeys(ANSWER_STAGES - (set() if scored_stateless else {"reward"}), 1.0)
