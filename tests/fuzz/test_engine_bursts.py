"""The engine services (generation, reward, safety) under concurrent bursts that share engine steps (tests/fuzz/engine_bursts.py).

The oracle: every call ends with a deliberate status and the service is SERVING after every burst;
no request, alone or beside others, may kill an engine. `make test` runs a short deterministic
sequence (profile `ci`), `make fuzz` at least 2,000 requests per service.
"""

from __future__ import annotations

import random

import grpc
import pytest

from chatstack.v1 import (
    generation_pb2,
    generation_pb2_grpc,
    reward_pb2,
    reward_pb2_grpc,
    safety_pb2,
    safety_pb2_grpc,
)
from tests.fuzz.engine_bursts import BURST_BOOKS, EngineBurstFuzzer, EngineFacts
from tests.fuzz.profiles import PROFILE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(PROFILE.test_timeout)]
SEED = 23 if PROFILE.derandomize else None


def _facts(service: str, address: str) -> EngineFacts:
    with grpc.insecure_channel(address) as channel:
        if service == "generation":
            info = generation_pb2_grpc.GenerationServiceStub(channel).GetModelInfo(
                generation_pb2.GetModelInfoRequest(), timeout=30)
            return EngineFacts(info.max_model_len, info.vocab_size, info.max_n)
        if service == "safety":
            guard = safety_pb2_grpc.SafetyServiceStub(channel).GetModelInfo(
                safety_pb2.SafetyServiceGetModelInfoRequest(), timeout=30)
            return EngineFacts(guard.max_model_len, 2048, 1, step_tokens=guard.max_model_len)
        reward = reward_pb2_grpc.RewardServiceStub(channel).GetModelInfo(
            reward_pb2.RewardServiceGetModelInfoRequest(), timeout=30)
        return EngineFacts(reward.max_model_len, 2048, 1, step_tokens=reward.max_model_len)


@pytest.mark.parametrize("service", ["generation", "reward", "safety"])
async def test_bursts_sharing_engine_steps_never_kill_an_engine(
        service: str, request: pytest.FixtureRequest) -> None:
    address = request.getfixturevalue(f"{service}_service")[0]
    fuzzer = EngineBurstFuzzer(service, address, _facts(service, address),
                               seed=SEED if SEED is not None else random.randrange(2**32))
    try:
        await fuzzer.run(PROFILE.burst_requests)
    finally:
        await fuzzer.close()
    mine = [v for v in BURST_BOOKS.violations if v.startswith(f"{service}:")]
    assert not mine, "\n".join(mine[:20])
