"""Reproductions of requests that killed the generation engine (issue 23), over the real stack.

vLLM 0.32 on CPU: a seeded request that is only partly prefilled in an engine step (chunked
prefill shares the step's token budget) has its torch.Generator rewound by an offset, which a CPU
generator does not have (`RuntimeError: CPU Generator does not use offset`), and the engine core
died. The generation service keeps such requests whole (`chunked_prefill: auto` is off on CPU).
Each test checks the answers and that the engine still serves afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import openai
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatstack.v1 import common_pb2, generation_pb2, generation_pb2_grpc
from tests.integration.conftest import ALICE_KEY, GENERATION_SERVICE
from tests.stack_fixtures import GatewayProcess

pytestmark = pytest.mark.integration


def serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=GENERATION_SERVICE), timeout=30)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def long_ids(length: int, salt: int) -> common_pb2.TokenIds:
    return common_pb2.TokenIds(ids=[(i * 7 + salt * 13) % 500 + 3 for i in range(length)])


async def test_four_concurrent_seeded_long_prompts_are_answered_and_the_engine_lives(
        generation_service: tuple[str, int]) -> None:
    """4 x 1,200 prompt tokens > one step's 2,048: the later prompts were split across steps."""
    address = generation_service[0]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = generation_pb2_grpc.GenerationServiceStub(channel)
        replies = await asyncio.gather(*(stub.Generate(generation_pb2.GenerateRequest(
            token_ids=long_ids(1200, k), sampling=generation_pb2.SamplingParams(seed=7 + k, max_tokens=4)),
            timeout=120) for k in range(4)))
    assert all(1 <= len(r.choices[0].token_ids) <= 4 for r in replies)  # (the tiny model may stop early)
    assert serving(address)


def test_n_2_seeded_prompt_at_the_window_edge_is_answered_and_the_engine_lives(
        generation_service: tuple[str, int]) -> None:
    """n: 2 fans out into two seeded requests; 2 x 1,100 prompt tokens do not fit one step."""
    address = generation_service[0]
    with grpc.insecure_channel(address) as channel:
        stub = generation_pb2_grpc.GenerationServiceStub(channel)
        for length in (1100, 2041):
            reply = stub.Generate(generation_pb2.GenerateRequest(
                token_ids=long_ids(length, 1), sampling=generation_pb2.SamplingParams(n=2, seed=3, max_tokens=4)),
                timeout=120)
            assert len(reply.choices) == 2 and all(1 <= len(c.token_ids) <= 4 for c in reply.choices)
    assert serving(address)


@pytest.fixture(scope="module")
def client(gateway_process: GatewayProcess) -> Iterator[openai.AsyncOpenAI]:
    yield openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{gateway_process.http_port}/v1", api_key=ALICE_KEY,
                             max_retries=0, timeout=120)


async def test_four_concurrent_seeded_chat_completions_with_long_messages_are_answered(
        client: openai.AsyncOpenAI, generation_service: tuple[str, int]) -> None:
    """The issue's first reproduction, as a new user sent it: 4 x ~1,200-token messages with a seed."""
    model = (await client.models.list()).data[0].id
    message = " ".join(f"word{i % 97}" for i in range(200))  # ~1,230 tokens with the tiny tokenizer
    replies = await asyncio.gather(*(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": f"{k} {message}"}], max_tokens=4, seed=11 + k)
        for k in range(4)))
    assert all(r.choices[0].finish_reason in ("stop", "length") for r in replies)
    assert all(r.usage is not None and r.usage.prompt_tokens > 1024 for r in replies)
    assert serving(generation_service[0])
