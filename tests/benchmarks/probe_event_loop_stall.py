"""Event-loop stall probe: a health Check every 100 ms beside each large request, per service.

A service whose event loop is busy with one request (tokenizing 10 MB, rendering a huge
conversation, building a large response) cannot answer anything else, its health checks
included: Kubernetes probes then fail and small requests miss their deadlines. This probe starts
each service as `make run` does, sends the largest requests its limits allow (and some beyond
them, which must be refused by their size before any work), and meanwhile sends a health Check
every 100 ms on its own channel. It prints, per request, the status the request got, its
latency, and the worst and median Check latency while it ran (aim: worst < 100 ms).

Not a test (no timing assertions): `make bench`, or
`python -m tests.benchmarks.probe_event_loop_stall --models-dir .models/tiny`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chatstack.catalog import TINY_ENGINE_FLAGS
from chatstack.core.process import ManagedProcess, free_port, start_grpc_service
from chatstack.core.redis_process import RedisProcess
from chatstack.gateway.auth import hash_key
from chatstack.local_stack import engine_placement_flags
from chatstack.v1 import (
    chat_pb2,
    chat_pb2_grpc,
    common_pb2,
    generation_pb2,
    generation_pb2_grpc,
    reward_pb2,
    reward_pb2_grpc,
    session_pb2,
    session_pb2_grpc,
    tokenizer_pb2,
    tokenizer_pb2_grpc,
)

MB = 1024 * 1024
OPTIONS = [("grpc.max_receive_message_length", 64 * MB), ("grpc.max_send_message_length", 64 * MB)]
API_KEY = "stall-probe-key"
USER = common_pb2.ROLE_USER


@dataclass
class Probe:
    """One large request and what the health Checks beside it saw."""

    service: str
    request: str
    code: str
    seconds: float
    worst_check_ms: float
    median_check_ms: float
    checks: int


def checks_during(address: str, run: Callable[[], Any]) -> tuple[str, float, list[float]]:
    """Run `run` while a thread sends a health Check every 100 ms; returns the request's status,
    its seconds and every Check's latency (a Check still waiting when the request ends counts
    with its wait so far)."""
    latencies: list[float] = []
    done = threading.Event()

    def checker() -> None:
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            health.Check(health_pb2.HealthCheckRequest(), timeout=30)  # connected before we start
            ready.set()
            while not done.is_set():
                started = time.perf_counter()
                health.Check(health_pb2.HealthCheckRequest(), timeout=60)
                latencies.append(time.perf_counter() - started)
                done.wait(0.1)

    ready = threading.Event()
    thread = threading.Thread(target=checker, daemon=True)
    thread.start()
    ready.wait(30)
    started = time.perf_counter()
    try:
        run()
        code = "OK"
    except grpc.RpcError as err:
        code = err.code().name
    seconds = time.perf_counter() - started
    done.wait(0.25)  # at least two Checks after the request, to see the loop free again
    done.set()
    thread.join(70)
    return code, seconds, latencies


def probe(service: str, name: str, address: str, run: Callable[[], Any]) -> Probe:
    code, seconds, latencies = checks_during(address, run)
    worst = max(latencies) * 1e3 if latencies else float("nan")
    median = statistics.median(latencies) * 1e3 if latencies else float("nan")
    return Probe(service, name, code, seconds, worst, median, len(latencies))


def chat_messages(total_chars: int, count: int) -> list[common_pb2.ChatMessage]:
    """`count` user messages of ordinary words, `total_chars` characters in all."""
    text = ("the quick brown fox jumps over the lazy dog " * (total_chars // count // 44 + 1))
    return [common_pb2.ChatMessage(role=USER, content=text[:total_chars // count]) for _ in range(count)]


def tokenizer_probes(address: str) -> Iterator[Probe]:
    with grpc.insecure_channel(address, options=OPTIONS) as channel:
        stub = tokenizer_pb2_grpc.TokenizerServiceStub(channel)
        yield probe("tokenizer", "ApplyChatTemplate 10 x 200k chars (the per-request limit)", address,
                    lambda: stub.ApplyChatTemplate(tokenizer_pb2.ApplyChatTemplateRequest(
                        messages=chat_messages(1_990_000, 10)), timeout=120))
        yield probe("tokenizer", "ApplyChatTemplate 15 x 999k chars (over the limit)", address,
                    lambda: stub.ApplyChatTemplate(tokenizer_pb2.ApplyChatTemplateRequest(
                        messages=chat_messages(14_985_000, 15)), timeout=120))
        texts = [m.content for m in chat_messages(1_990_000, 2)]
        yield probe("tokenizer", "Encode 2 x 995k chars with offsets", address,
                    lambda: stub.Encode(tokenizer_pb2.EncodeRequest(texts=texts, return_offsets=True),
                                        timeout=120))
        text = texts[0]
        yield probe("tokenizer", "CountTokens 1024 x 1.9k chars", address,
                    lambda: stub.CountTokens(tokenizer_pb2.CountTokensRequest(texts=[text[:1900]] * 1024),
                                             timeout=120))


def generation_probes(address: str) -> Iterator[Probe]:
    with grpc.insecure_channel(address, options=OPTIONS) as channel:
        stub = generation_pb2_grpc.GenerationServiceStub(channel)
        for label, chars in (("Generate 10 MiB text prompt", 10 * MB), ("Generate 60k-char prompt", 60_000),
                             ("Generate 2k-char prompt (fits)", 2_000)):
            text = chat_messages(chars, 1)[0].content
            yield probe("generation", label, address, lambda text=text: stub.Generate(
                generation_pb2.GenerateRequest(text=text, sampling=generation_pb2.SamplingParams(
                    max_tokens=8)), timeout=120))


def reward_probes(address: str) -> Iterator[Probe]:
    with grpc.insecure_channel(address, options=OPTIONS) as channel:
        stub = reward_pb2_grpc.RewardServiceStub(channel)
        question = [common_pb2.ChatMessage(role=USER, content="what now?")]
        for label, chars in (("Score 10 MiB response", 10 * MB), ("Score 20k-char response", 20_000)):
            response = chat_messages(chars, 1)[0].content
            item = reward_pb2.ScoreItem(conversation=question, response=response)
            yield probe("reward", label, address, lambda item=item: stub.Score(
                reward_pb2.ScoreRequest(item=item, truncation=reward_pb2.TRUNCATION_AUTO), timeout=120))
        long = reward_pb2.ScoreItem(conversation=chat_messages(400_000, 200), response="fine")
        yield probe("reward", "Score, 200-message conversation (400k chars), truncation auto", address,
                    lambda: stub.Score(reward_pb2.ScoreRequest(item=long, truncation=reward_pb2.TRUNCATION_AUTO),
                                       timeout=120))


def session_probes(address: str) -> Iterator[Probe]:
    owner = (("x-chatstack-owner", "stall-probe"),)
    with grpc.insecure_channel(address, options=OPTIONS) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        sid = stub.CreateSession(session_pb2.CreateSessionRequest(), metadata=owner).session.session_id
        content = "x" * (256 * 1024)
        for _ in range(200):
            stub.PushTurn(session_pb2.PushTurnRequest(session_id=sid, role=USER, content=content), metadata=owner)
        yield probe("session", "ListTurns 200 x 256 KiB turns (one page)", address, lambda: stub.ListTurns(
            session_pb2.ListTurnsRequest(session_id=sid, page_size=40), metadata=owner, timeout=60))
        yield probe("session", "PushTurn 8 MiB metadata (over the limit)", address, lambda: stub.PushTurn(
            session_pb2.PushTurnRequest(session_id=sid, role=USER, content="x", metadata={"k": "v" * 8 * MB}),
            metadata=owner, timeout=60))


def gateway_probes(address: str) -> Iterator[Probe]:
    auth = (("authorization", f"Bearer {API_KEY}"),)
    with grpc.insecure_channel(address, options=OPTIONS) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        for label, chars in (("Chat 2k-char message (fits)", 2_000), ("Chat 32k-char message (the limit)", 32_000),
                             ("Chat 10 MiB message (over the limit)", 10 * MB)):
            message = chat_messages(chars, 1)[0].content
            yield probe("gateway", label, address, lambda message=message: list(stub.Chat(
                chat_pb2.ChatRequest(message=message, options=chat_pb2.ChatOptions(max_tokens=8)),
                metadata=auth, timeout=120)))


@contextmanager
def stack(models: Path, run: Path) -> Iterator[dict[str, str]]:
    """Every service as `make run` starts it (same flags), on free ports."""
    redis = RedisProcess(free_port(), run / "redis").start()
    procs: list[ManagedProcess] = []
    addresses: dict[str, str] = {}

    def start(name: str, *flags: str) -> None:
        port = free_port()
        procs.append(start_grpc_service(f"{name}-stall", name, port, free_port(), run / "logs", flags,
                                        timeout=300))
        addresses[name] = f"127.0.0.1:{port}"

    try:
        start("tokenizer", "--model-dir", str(models / "lm"))
        start("session", "--redis-url", redis.url)
        start("generation", "--model", str(models / "lm"), *TINY_ENGINE_FLAGS,
              *engine_placement_flags(0))
        start("reward", "--model", str(models / "reward"), *TINY_ENGINE_FLAGS,
              *engine_placement_flags(1))
        start("gateway", "--api-keys", f"probe:{hash_key(API_KEY)}", "--http-port", "0",
              *(f for s in ("tokenizer", "generation", "reward", "session")
                for f in (f"--{s}-address", addresses[s])))
        yield addresses
    finally:
        for proc in reversed(procs):
            proc.stop()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", default=".models/tiny")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, stack(Path(args.models_dir).resolve(), Path(tmp)) as addr:
        results: list[Probe] = []
        for probes in (tokenizer_probes(addr["tokenizer"]), generation_probes(addr["generation"]),
                       reward_probes(addr["reward"]), session_probes(addr["session"]),
                       gateway_probes(addr["gateway"])):
            for result in probes:
                results.append(result)
                print(f"{result.service:<10} {result.request:<62} {result.code:<17} "
                      f"{result.seconds * 1e3:8.0f} ms   health worst {result.worst_check_ms:6.1f} ms "
                      f"p50 {result.median_check_ms:5.1f} ms  ({result.checks} checks)", flush=True)
        worst = max(results, key=lambda r: r.worst_check_ms)
        print(f"\nworst health Check beside any request: {worst.worst_check_ms:.1f} ms "
              f"({worst.service}: {worst.request})")


if __name__ == "__main__":
    main()
