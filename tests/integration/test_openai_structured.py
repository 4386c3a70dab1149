"""Structured output through the gateway's front doors, driven by the official `openai` SDK's own
structured helpers (`chat.completions.parse`, `responses.parse`) and by gRPC Chat: the tiny random
model, constrained, answers valid JSON for the caller's schema every time."""

from __future__ import annotations

import json
from typing import Literal

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from chatstack.client import ChatClient
from chatstack.v1 import common_pb2
from tests.integration.conftest import ALICE_KEY
from tests.stack_fixtures import GatewayProcess

pytestmark = pytest.mark.integration
ASK = [{"role": "user", "content": "Pick a color and a count."}]


class Pick(BaseModel):
    """What the model is asked for (bounded fields: a random model fills free strings to max_tokens)."""

    color: Literal["red", "green", "blue"]
    count: int = Field(ge=0, le=9)
    ok: bool


def test_chat_completions_parse_returns_the_pydantic_object(openai_sdk: openai.OpenAI, served_model: str) -> None:
    for seed in range(3):
        completion = openai_sdk.chat.completions.parse(model=served_model, messages=ASK, response_format=Pick, max_tokens=96,
                                                temperature=1.0, seed=seed)
        message = completion.choices[0].message
        assert isinstance(message.parsed, Pick) and completion.choices[0].finish_reason == "stop"
        assert message.content == message.parsed.model_dump_json(), message.content  # compact JSON


def test_best_of_ranks_constrained_candidates_and_a_stream_is_valid_json(openai_sdk: openai.OpenAI, served_model: str) -> None:
    schema = Pick.model_json_schema()
    fmt = {"type": "json_schema", "json_schema": {"name": "pick", "schema": schema, "strict": True}}
    best = openai_sdk.chat.completions.create(model=served_model, messages=ASK, response_format=fmt,  # type: ignore[arg-type]
                                       max_tokens=96, temperature=1.0, seed=5, n=2, extra_body={"best_of": 3})
    assert len(best.choices) == 2 and all("reward" in (c.model_extra or {}) for c in best.choices)
    for choice in best.choices:
        jsonschema.validate(json.loads(choice.message.content or ""), schema)
    stream = openai_sdk.chat.completions.create(model=served_model, messages=ASK, response_format={"type": "json_object"},
                                         max_tokens=200, temperature=1.0, seed=6, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text.startswith("{") and (finish != ["stop"] or isinstance(json.loads(text), dict))


def test_responses_parse_returns_the_pydantic_object_and_echoes_the_format(openai_sdk: openai.OpenAI, served_model: str) -> None:
    response = openai_sdk.responses.parse(model=served_model, input="Pick a color and a count.", text_format=Pick,
                                   max_output_tokens=96, temperature=1.0, extra_body={"seed": 2})
    assert isinstance(response.output_parsed, Pick)
    assert response.text is not None and response.text.format.type == "json_schema"
    follow = openai_sdk.responses.create(model=served_model, input="Again, as JSON.", previous_response_id=response.id,
                                  text={"format": {"type": "json_object"}}, max_output_tokens=200,
                                  temperature=1.0, extra_body={"seed": 3})
    assert follow.output_text.startswith("{")


@pytest.mark.parametrize(("call", "param"), [
    ("chat", "response_format.json_schema.schema"), ("responses", "text.format.schema")])
def test_a_schema_that_does_not_compile_is_a_400_naming_it(openai_sdk: openai.OpenAI, served_model: str, call: str,
                                                           param: str) -> None:
    bad = {"type": "nonsense"}
    with pytest.raises(openai.BadRequestError) as refused:
        if call == "chat":
            openai_sdk.chat.completions.create(model=served_model, messages=ASK, max_tokens=8, response_format={
                "type": "json_schema", "json_schema": {"name": "bad", "schema": bad}})
        else:
            openai_sdk.responses.create(model=served_model, input="hi", max_output_tokens=8, text={"format": {
                "type": "json_schema", "name": "bad", "schema": bad}})
    body = refused.value.body
    assert isinstance(body, dict) and body["param"] == param and "nonsense" in body["message"], body


def test_grpc_chat_answers_every_best_of_candidate_within_the_constraint(gateway_process: GatewayProcess) -> None:
    schema = Pick.model_json_schema()
    constraint = common_pb2.OutputConstraint(json_schema=json.dumps(schema))
    with ChatClient(gateway_process.address, ALICE_KEY, timeout=120) as client:
        result = client.chat("Pick.", max_tokens=96, temperature=1.0, seed=4, best_of=3, constraint=constraint)
        assert len(result.candidates) == 3
        for candidate in result.candidates:
            jsonschema.validate(json.loads(candidate.text), schema)
        assert Pick.model_validate_json(result.text)
        bad = common_pb2.OutputConstraint(regex="(")
        with pytest.raises(Exception, match=r"options\.constraint: "):
            client.chat("Pick.", max_tokens=8, constraint=bad)
