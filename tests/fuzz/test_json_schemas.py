"""Validity of constrained decoding over many schemas: every answer the generation service gives
under a JSON-schema constraint validates against it (`jsonschema`), concurrently, with no engine
error. An answer cut by max_tokens is counted apart (a JSON number's digits are unbounded, and a
random model may keep writing them), at most 1 in 20. `make test` runs 24 schemas (profile `ci`);
`make fuzz` runs 120."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import grpc
import jsonschema
import pytest

from chatstack.v1 import common_pb2, generation_pb2, generation_pb2_grpc
from tests.fuzz.json_schemas import schemas
from tests.fuzz.profiles import PROFILE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(PROFILE.test_timeout)]
CONCURRENCY = 8


async def _answer(stub: generation_pb2_grpc.GenerationServiceStub, schema: dict[str, Any],
                  seed: int) -> generation_pb2.Choice:
    reply = await stub.Generate(generation_pb2.GenerateRequest(
        token_ids=common_pb2.TokenIds(ids=[1, 300, 301, 302]), sampling=generation_pb2.SamplingParams(
            max_tokens=256, temperature=1.0, seed=seed,
            constraint=common_pb2.OutputConstraint(json_schema=json.dumps(schema)))), timeout=300)
    return reply.choices[0]


async def test_every_constrained_answer_validates_against_its_schema(generation_service: tuple[str, int]) -> None:
    cases = schemas(PROFILE.schema_count)
    started, failures, cut = time.perf_counter(), [], 0
    async with grpc.aio.insecure_channel(generation_service[0]) as channel:
        stub = generation_pb2_grpc.GenerationServiceStub(channel)
        for first in range(0, len(cases), CONCURRENCY):  # each group shares engine steps
            group = list(enumerate(cases))[first:first + CONCURRENCY]
            answers = await asyncio.gather(*(_answer(stub, s, i) for i, s in group), return_exceptions=True)
            for (i, schema), answer in zip(group, answers, strict=True):
                try:
                    assert not isinstance(answer, BaseException), answer
                    if answer.finish_reason == common_pb2.FINISH_REASON_LENGTH:
                        cut += 1  # a number's digits are unbounded: a random model may run out of tokens
                        continue
                    jsonschema.validate(json.loads(answer.text), schema)
                except (AssertionError, ValueError, jsonschema.ValidationError) as exc:
                    text = "" if isinstance(answer, BaseException) else answer.text
                    failures.append(f"schema {i}: {str(exc)[:200]} answer {text[:200]!r} schema "
                                    f"{json.dumps(schema)[:300]}")
    print(f"\nchatstack constrained decoding: {len(cases)} schemas, {len(failures)} invalid, {cut} cut by "
          f"max_tokens, {time.perf_counter() - started:.1f} s")
    assert not failures, "\n".join(failures)
    assert cut <= len(cases) // 20, f"{cut} of {len(cases)} answers cut by max_tokens"
