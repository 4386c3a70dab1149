"""Fixtures that start the real servers (redis-server, every chatstack service, the gateway).

Registered once for the whole suite by `pytest_plugins` in tests/conftest.py, so each server
starts at most once per run whichever directories use it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NamedTuple

import grpc
import openai
import pytest

from chatstack.catalog import GATEWAY, GENERATION, REWARD, SAFETY, SESSION, TINY_ENGINE_FLAGS, TOKENIZER
from chatstack.core.process import ManagedProcess, free_port, start_grpc_service
from chatstack.core.redis_process import RedisProcess
from chatstack.local_stack import engine_placement_flags
from chatstack.v1 import generation_pb2_grpc, session_pb2_grpc

SESSION_SERVICE = SESSION.proto_service


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A real redis-server on a free port, with the chart's default AOF fsync (everysec).

    Not `always`: that fsyncs in Redis's one thread before every reply, so another process's
    disk writes stall every read and write (here: p99 124 ms, max 323 ms against 1.8 / 33 ms with
    everysec; on CI a stall passed the session service's 2 s Redis timeout mid-load-test). The
    durability test runs its own `always` server."""
    server = RedisProcess(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


def start_session_service(redis_url: str, log_dir: Path, *flags: str, name: str = "session",
                          host: str = "127.0.0.1", port: int = 0) -> tuple[ManagedProcess, str, int]:
    """Start the session service against `redis_url` (on host:port, default a free port);
    returns (process, address, metrics port)."""
    port, metrics_port = port or free_port(host), free_port()
    proc = start_grpc_service(name, "session", port, metrics_port, log_dir,
                              ("--redis-url", redis_url, *flags), health_service=SESSION_SERVICE, host=host)
    return proc, f"{host}:{port}", metrics_port


@pytest.fixture(scope="session")
def session_service(redis_server: RedisProcess, log_dir: Path) -> Iterator[tuple[str, int]]:
    """The session service on the shared redis; yields (address, metrics port)."""
    proc, address, metrics_port = start_session_service(
        redis_server.url, log_dir, "--max-turns", "0", "--max-content-bytes", "1024")
    yield address, metrics_port
    assert proc.stop() == 0, proc.tail()


@pytest.fixture(scope="session")
def session_stub(session_service: tuple[str, int]) -> Iterator[session_pb2_grpc.SessionServiceStub]:
    """A sync stub on the shared session service."""
    with grpc.insecure_channel(session_service[0]) as channel:
        yield session_pb2_grpc.SessionServiceStub(channel)


GENERATION_SERVICE = GENERATION.proto_service
GENERATION_FLAGS = (*TINY_ENGINE_FLAGS, "--max-in-flight", "24", "--max-num-seqs", "32",
                    "--max-n", "4", "--log-level", "WARNING", *engine_placement_flags(0))


def start_generation_service(model_dir: Path, log_dir: Path, *flags: str, name: str = "generation",
                             host: str = "127.0.0.1", port: int = 0,
                             metrics_port: int = 0) -> tuple[ManagedProcess, str, int]:
    """Start the generation service (a real vLLM engine) on host:port (default a free port);
    returns (process, address, metrics port)."""
    port, metrics_port = port or free_port(host), metrics_port or free_port()
    proc = start_grpc_service(name, "generation", port, metrics_port, log_dir,
                              ("--model", str(model_dir), *GENERATION_FLAGS, *flags),
                              health_service=GENERATION_SERVICE, timeout=300, host=host)
    return proc, f"{host}:{port}", metrics_port


@pytest.fixture(scope="session")
def generation_service(models_dir: Path, log_dir: Path) -> Iterator[tuple[str, int]]:
    """One generation service (vLLM on the tiny LM) for the whole test session."""
    proc, address, metrics_port = start_generation_service(models_dir / "lm", log_dir)
    yield address, metrics_port
    assert proc.stop(60) == 0, proc.tail()


@pytest.fixture(scope="session")
def generation_stub(generation_service: tuple[str, int]) -> Iterator[generation_pb2_grpc.GenerationServiceStub]:
    """A sync stub on the shared generation service."""
    with grpc.insecure_channel(generation_service[0]) as channel:
        yield generation_pb2_grpc.GenerationServiceStub(channel)


@pytest.fixture
async def generation_astub(generation_service: tuple[str, int]
                           ) -> AsyncIterator[generation_pb2_grpc.GenerationServiceStub]:
    """An asyncio stub on the shared generation service (one channel per test: its own loop)."""
    async with grpc.aio.insecure_channel(generation_service[0]) as channel:
        yield generation_pb2_grpc.GenerationServiceStub(channel)


REWARD_SERVICE = REWARD.proto_service


def start_reward_service(model_dir: Path, log_dir: Path, name: str = "reward"
                         ) -> tuple[ManagedProcess, str, int]:
    """Start the reward service (vLLM's pooling runner) on `model_dir`; returns (process,
    address, metrics port)."""
    port, metrics_port = free_port(), free_port()
    proc = start_grpc_service(
        name, "reward", port, metrics_port, log_dir,
        ("--model", str(model_dir), *TINY_ENGINE_FLAGS, *engine_placement_flags(1), "--max-candidates", "8",
         "--max-batch-items", "64", "--max-model-len", "512", "--log-level", "WARNING"),
        health_service=REWARD_SERVICE, timeout=300)
    return proc, f"127.0.0.1:{port}", metrics_port


@pytest.fixture(scope="session")
def reward_service(models_dir: Path, log_dir: Path) -> Iterator[tuple[str, int]]:
    """One reward service (vLLM pooling runner on the tiny reward model) for the session."""
    proc, address, metrics_port = start_reward_service(models_dir / "reward", log_dir)
    yield address, metrics_port
    assert proc.stop(60) == 0, proc.tail()


SAFETY_SERVICE = SAFETY.proto_service


def start_safety_service(model_dir: Path, log_dir: Path, *flags: str, name: str = "safety"
                         ) -> tuple[ManagedProcess, str, int]:
    """Start the safety service (the guard on vLLM's pooling runner) on `model_dir`; returns
    (process, address, metrics port). Its engine shares the reward engine's cores: both stay off
    generation's."""
    port, metrics_port = free_port(), free_port()
    proc = start_grpc_service(
        name, "safety", port, metrics_port, log_dir,
        ("--model", str(model_dir), *TINY_ENGINE_FLAGS, *engine_placement_flags(1), "--log-level", "WARNING",
         *flags),
        health_service=SAFETY_SERVICE, timeout=300)
    return proc, f"127.0.0.1:{port}", metrics_port


@pytest.fixture(scope="session")
def safety_service(models_dir: Path, log_dir: Path) -> Iterator[tuple[str, int]]:
    """One safety service (vLLM pooling runner on the tiny guard) for the session."""
    proc, address, metrics_port = start_safety_service(models_dir / "guard", log_dir)
    yield address, metrics_port
    assert proc.stop(60) == 0, proc.tail()


TOKENIZER_SERVICE = TOKENIZER.proto_service
CHAT_SERVICE = GATEWAY.proto_service
ALICE_KEY, BOB_KEY = "alice-secret-key", "bob-secret-key"


@pytest.fixture(scope="session")
def tokenizer_address(models_dir: Path, log_dir: Path) -> Iterator[str]:
    """One tokenizer service for the session's gateway tests."""
    port = free_port()
    proc = start_grpc_service("tokenizer-shared", "tokenizer", port, free_port(), log_dir,
                              ("--model-dir", str(models_dir / "lm")), health_service=TOKENIZER_SERVICE)
    yield f"127.0.0.1:{port}"
    proc.stop()


class GatewayProcess(NamedTuple):
    """A gateway started by a fixture."""

    proc: ManagedProcess
    address: str  # gRPC host:port
    metrics_port: int
    http_port: int  # the OpenAI-compatible API: http://127.0.0.1:<http_port>/v1


def start_gateway(log_dir: Path, name: str = "gateway", extra_flags: tuple[str, ...] = (),
                  **addresses: str) -> GatewayProcess:
    """A gateway with keys for alice and bob; addresses: tokenizer=..., generation=..., etc."""
    from chatstack.gateway.auth import hash_key

    port, metrics_port, http_port = free_port(), free_port(), free_port()
    flags = ["--api-keys", f"alice:{hash_key(ALICE_KEY)},bob:{hash_key(BOB_KEY)}", "--log-level", "WARNING",
             "--http-port", str(http_port), *extra_flags]
    for service, address in addresses.items():
        flags += [f"--{service}-address", address]
    proc = start_grpc_service(name, "gateway", port, metrics_port, log_dir, flags, health_service=CHAT_SERVICE)
    return GatewayProcess(proc, f"127.0.0.1:{port}", metrics_port, http_port)


@pytest.fixture(scope="session")
def stack_addresses(tokenizer_address: str, session_service: tuple[str, int],
                    generation_service: tuple[str, int], reward_service: tuple[str, int]) -> dict[str, str]:
    """Addresses of the four real backend services."""
    return {"tokenizer": tokenizer_address, "session": session_service[0],
            "generation": generation_service[0], "reward": reward_service[0]}


@pytest.fixture(scope="session")
def gateway_process(stack_addresses: dict[str, str], log_dir: Path) -> Iterator[GatewayProcess]:
    """The gateway over the real stack."""
    started = start_gateway(log_dir, **stack_addresses)
    yield started
    assert started.proc.stop() == 0, started.proc.tail()


@pytest.fixture(scope="session")
def openai_sdk(gateway_process: GatewayProcess) -> Iterator[openai.OpenAI]:
    """The official `openai` SDK on the shared gateway's HTTP API, as alice. max_retries=0: the SDK
    retries 409/429/5xx by default, which would hide the first answer."""
    with openai.OpenAI(base_url=f"http://127.0.0.1:{gateway_process.http_port}/v1", api_key=ALICE_KEY,
                       max_retries=0, timeout=120) as sdk:
        yield sdk


@pytest.fixture(scope="session")
def served_model(openai_sdk: openai.OpenAI) -> str:
    """The one model the gateway serves (GET /v1/models)."""
    models = openai_sdk.models.list().data
    assert len(models) == 1
    return models[0].id


@pytest.fixture(scope="session")
def gateway(gateway_process: GatewayProcess) -> tuple[str, int]:
    """The gateway over the real stack: (gRPC address, metrics port)."""
    return gateway_process.address, gateway_process.metrics_port
