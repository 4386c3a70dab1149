"""Structured output in the generation service: a constraint on SamplingParams (json_schema, regex,
grammar, choice, json_object) decodes every choice into a valid answer, even from the tiny random
model; a constraint that does not compile, is too large or is malformed is INVALID_ARGUMENT naming
its field, before admission; constrained and free requests share engine steps safely."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import grpc
import jsonschema
import pytest

from chatstack.v1 import common_pb2, generation_pb2, generation_pb2_grpc

pytestmark = pytest.mark.integration
PROMPT = [1, 300, 301, 302]
STOP = common_pb2.FINISH_REASON_STOP

SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 6},
                                      "age": {"type": "integer", "minimum": 0, "maximum": 120}},
     "required": ["name", "age"], "additionalProperties": False},
    {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]},
                                      "ok": {"type": "boolean"}},
     "required": ["color", "ok"], "additionalProperties": False},
    {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 9}, "minItems": 1, "maxItems": 3},
    {"type": "object", "properties": {"point": {"type": "object", "properties": {
        "x": {"type": "number", "minimum": -1, "maximum": 1}, "y": {"type": "number", "minimum": -1, "maximum": 1}},
        "required": ["x", "y"], "additionalProperties": False}},
     "required": ["point"], "additionalProperties": False},
    {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 99}, {"type": "string", "pattern": "^[a-c]{2}$"}]},
]


def constrained(constraint: common_pb2.OutputConstraint, n: int = 1, max_tokens: int = 96,
                **sampling: Any) -> generation_pb2.GenerateRequest:
    return generation_pb2.GenerateRequest(token_ids=common_pb2.TokenIds(ids=PROMPT), sampling=(
        generation_pb2.SamplingParams(n=n, max_tokens=max_tokens, constraint=constraint,
                                      **({"temperature": 1.0, "seed": 3} | sampling))))


@pytest.mark.parametrize("schema", SCHEMAS, ids=["object", "enum", "array", "nested", "anyOf"])
def test_every_choice_is_compact_json_valid_for_the_schema(generation_stub: generation_pb2_grpc.GenerationServiceStub,
                                                            schema: dict[str, Any]) -> None:
    reply = generation_stub.Generate(constrained(common_pb2.OutputConstraint(json_schema=json.dumps(schema)), n=3),
                          timeout=120)
    assert len(reply.choices) == 3
    for choice in reply.choices:
        assert choice.finish_reason == STOP, choice
        jsonschema.validate(json.loads(choice.text), schema)
        assert not re.search(r"\s{2,}|[\n\r\t]", choice.text), choice.text  # compact


def test_regex_grammar_choice_and_json_object_hold_too(generation_stub: generation_pb2_grpc.GenerationServiceStub) -> None:
    regex = generation_stub.Generate(constrained(common_pb2.OutputConstraint(regex=r"[a-z]{3}-[0-9]{2}"), n=2), timeout=60)
    assert all(re.fullmatch(r"[a-z]{3}-[0-9]{2}", c.text) for c in regex.choices), regex
    grammar = generation_stub.Generate(constrained(common_pb2.OutputConstraint(
        grammar='root ::= answer " " answer\nanswer ::= "yes" | "no"'), n=2), timeout=60)
    assert all(re.fullmatch(r"(yes|no) (yes|no)", c.text) for c in grammar.choices), grammar
    choice = generation_stub.Generate(constrained(common_pb2.OutputConstraint(
        choice=common_pb2.OutputConstraint.Choices(values=["red", "green", "blue"])), n=3), timeout=60)
    assert all(c.text in ("red", "green", "blue") for c in choice.choices), choice
    obj = generation_stub.Generate(constrained(common_pb2.OutputConstraint(json_object=True), max_tokens=200), timeout=60)
    if obj.choices[0].finish_reason == STOP:  # an unbounded object may be cut by max_tokens
        assert isinstance(json.loads(obj.choices[0].text), dict)
    assert obj.choices[0].text.startswith("{")


def test_a_streamed_constrained_answer_is_the_same_as_a_whole_one(
        generation_stub: generation_pb2_grpc.GenerationServiceStub) -> None:
    constraint = common_pb2.OutputConstraint(json_schema=json.dumps(SCHEMAS[0]))
    whole = generation_stub.Generate(constrained(constraint, temperature=0.0), timeout=60).choices[0].text
    request = constrained(constraint, temperature=0.0)
    streamed = "".join(m.delta.text for m in generation_stub.GenerateStream(generation_pb2.GenerateStreamRequest(
        token_ids=request.token_ids, sampling=request.sampling), timeout=60) if m.HasField("delta"))
    assert streamed == whole and jsonschema.validate(json.loads(whole), SCHEMAS[0]) is None


@pytest.mark.parametrize(("constraint", "named", "says"), [
    (common_pb2.OutputConstraint(json_schema="{not json"), "sampling.constraint.json_schema", "not JSON"),
    (common_pb2.OutputConstraint(json_schema="[1, 2]"), "sampling.constraint.json_schema", "is an object"),
    (common_pb2.OutputConstraint(json_schema='{"type": "nonsense"}'), "sampling.constraint.json_schema",
     'Unsupported type "nonsense"'),
    (common_pb2.OutputConstraint(json_schema=json.dumps({"type": "object", "properties": {
        f"p{i}": {"type": "string", "description": "x" * 200} for i in range(400)}})),
     "sampling.constraint.json_schema", "exceed the limit"),
    (common_pb2.OutputConstraint(regex="(unclosed"), "sampling.constraint.regex", "not closed"),
    (common_pb2.OutputConstraint(grammar='root ::= "a" undefined_rule'), "sampling.constraint.grammar", ""),
    (common_pb2.OutputConstraint(grammar="  "), "sampling.constraint.grammar", "empty"),
    (common_pb2.OutputConstraint(choice=common_pb2.OutputConstraint.Choices()), "sampling.constraint.choice", ""),
    (common_pb2.OutputConstraint(choice=common_pb2.OutputConstraint.Choices(values=["a", ""])),
     "sampling.constraint.choice", "empty"),
    (common_pb2.OutputConstraint(json_object=False), "sampling.constraint.json_object", "true"),
    (common_pb2.OutputConstraint(), "sampling.constraint", "set one of"),
])
def test_a_bad_constraint_is_invalid_argument_naming_its_field(
        generation_stub: generation_pb2_grpc.GenerationServiceStub, constraint: common_pb2.OutputConstraint,
        named: str, says: str) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        generation_stub.Generate(constrained(constraint), timeout=60)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details()
    assert details.startswith(f"{named}:") and says in details
    assert ".cc:" not in details and "/project/" not in details  # not the backend's source locations


async def test_constrained_and_free_requests_share_engine_steps(
        generation_astub: generation_pb2_grpc.GenerationServiceStub) -> None:
    # No request may kill an engine: constrained requests batched with free ones, and with bad ones.
    schema = json.dumps(SCHEMAS[1])
    requests = [constrained(common_pb2.OutputConstraint(json_schema=schema), n=2, seed=i) for i in range(4)] + [
        generation_pb2.GenerateRequest(token_ids=common_pb2.TokenIds(ids=PROMPT), sampling=(
            generation_pb2.SamplingParams(max_tokens=24, temperature=1.0, seed=i))) for i in range(4)] + [
        constrained(common_pb2.OutputConstraint(regex="(")), constrained(common_pb2.OutputConstraint(
            choice=common_pb2.OutputConstraint.Choices(values=["a", "b"])), n=2)]
    results = await asyncio.gather(*(generation_astub.Generate(r, timeout=120) for r in requests), return_exceptions=True)
    for reply in results[:4]:
        assert not isinstance(reply, BaseException), reply
        for choice in reply.choices:
            jsonschema.validate(json.loads(choice.text), SCHEMAS[1])
    assert all(not isinstance(r, BaseException) and r.choices[0].text for r in results[4:8])
    assert isinstance(results[8], grpc.aio.AioRpcError) and results[8].code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not isinstance(results[9], BaseException) and {c.text for c in results[9].choices} <= {"a", "b"}
    after = await generation_astub.Generate(constrained(common_pb2.OutputConstraint(json_schema=schema)), timeout=60)
    jsonschema.validate(json.loads(after.choices[0].text), SCHEMAS[1])  # the engine still serves
