"""Gateway overhead: Chat through the gateway vs GenerationService.GenerateStream called directly.

Starts redis, the tokenizer, session, generation, reward and gateway services. N sequential
requests each way, interleaved, with the same prompt and sampling parameters:

  direct : GenerateStream with the prompt token ids the gateway sends (ApplyChatTemplate of the
           same messages from the tokenizer service) and the gateway's SamplingParams
           (n=1, max_tokens, min_tokens=1, temperature 0);
  gateway: Chat in one session that holds no turns before each call (the exchange is undone,
           untimed, after each call), so every prompt is identical; echo_prompt checks it.

The gateway path also counts tokens, reads/writes the session and scores the answer with the
reward model: that is the added latency reported. Per-stage timings come from ChatFinal.timings.
Run: `python -m tests.benchmarks.bench_gateway --models-dir .models/tiny`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from chatstack.catalog import GATEWAY, GENERATION, REWARD, SESSION, TOKENIZER
from chatstack.core.process import ManagedProcess, free_port, start_grpc_service
from chatstack.core.redis_process import RedisProcess
from chatstack.local_stack import engine_placement_flags
from chatstack.v1 import (
    chat_pb2,
    chat_pb2_grpc,
    common_pb2,
    generation_pb2,
    generation_pb2_grpc,
    tokenizer_pb2,
    tokenizer_pb2_grpc,
)

API_KEY = "bench-secret-key"
STAGES = ("session_read", "template", "ttft", "generation", "reward", "session_write", "total")
MESSAGE = "Tell me a short story about a cat who sails to the sea."


@dataclass
class Samples:
    """Client-measured latencies (seconds) of one side."""

    total: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


@dataclass
class Result:
    """Both sides plus the gateway's own stage timings."""

    direct: Samples
    gateway: Samples
    stages: dict[str, list[float]]
    prompt_mismatches: int
    prompt_tokens: int


def pct(values: list[float], q: float) -> float:
    """q-quantile in ms (nearest rank)."""
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1e3


def p50(values: list[float]) -> float:
    return statistics.median(values) * 1e3


def start_stack(models: Path, log_dir: Path, redis_url: str) -> tuple[list[ManagedProcess], dict[str, str]]:
    """The five services (stopped by the caller, in reverse order, even on failure)."""
    from chatstack.gateway.auth import hash_key

    procs: list[ManagedProcess] = []
    addresses: dict[str, str] = {}
    specs = [
        ("tokenizer", ("--model-dir", str(models / "lm")), TOKENIZER.proto_service),
        ("session", ("--redis-url", redis_url), SESSION.proto_service),
        ("generation", ("--model", str(models / "lm"), "--dtype", "float32", "--max-num-seqs", "16", "--cpu-kvcache-space-gib", "1",
                        *engine_placement_flags(0)),
         GENERATION.proto_service),
        ("reward", ("--model", str(models / "reward"), "--dtype", "float32", "--max-model-len", "512",
                    "--cpu-kvcache-space-gib", "1", *engine_placement_flags(1)),
         REWARD.proto_service),
    ]
    try:
        for name, flags, health in specs:
            port = free_port()
            print(f"  starting {name} ...", flush=True)
            procs.append(start_grpc_service(f"{name}-bench", name, port, free_port(), log_dir,
                                            (*flags, "--log-level", "WARNING"), health_service=health,
                                            timeout=300))
            addresses[name] = f"127.0.0.1:{port}"
        port = free_port()
        flags = ["--api-keys", f"bench:{hash_key(API_KEY)}", "--log-level", "WARNING", "--http-port", "0"]
        for name, address in addresses.items():
            flags += [f"--{name}-address", address]
        print("  starting gateway ...", flush=True)
        procs.append(start_grpc_service("gateway-bench", "gateway", port, free_port(), log_dir, flags,
                                        health_service=GATEWAY.proto_service))
        addresses["gateway"] = f"127.0.0.1:{port}"
    except BaseException:
        stop_all(procs)
        raise
    return procs, addresses


def stop_all(procs: list[ManagedProcess]) -> None:
    for proc in reversed(procs):
        proc.stop(60)


async def run(addresses: dict[str, str], requests: int, max_tokens: int, warmup: int) -> Result:
    md = (("authorization", f"Bearer {API_KEY}"),)
    channels = {name: grpc.aio.insecure_channel(address) for name, address in addresses.items()}
    try:
        chat = chat_pb2_grpc.ChatServiceStub(channels["gateway"])
        generation = generation_pb2_grpc.GenerationServiceStub(channels["generation"])
        tokenizer = tokenizer_pb2_grpc.TokenizerServiceStub(channels["tokenizer"])

        # The prompt the gateway renders for a session holding just this user message.
        rendered = await tokenizer.ApplyChatTemplate(tokenizer_pb2.ApplyChatTemplateRequest(
            messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=MESSAGE)],
            add_generation_prompt=True))
        # The SamplingParams the gateway builds for n=1, temperature 0 (see gateway.answering.sampling_params).
        direct_request = generation_pb2.GenerateStreamRequest(
            token_ids=common_pb2.TokenIds(ids=rendered.token_ids),
            sampling=generation_pb2.SamplingParams(n=1, max_tokens=max_tokens, min_tokens=1, temperature=0.0))
        chat_request = chat_pb2.ChatRequest(message=MESSAGE, options=chat_pb2.ChatOptions(
            max_tokens=max_tokens, temperature=0.0, echo_prompt=True))
        session = (await chat.CreateSession(chat_pb2.ChatServiceCreateSessionRequest(), metadata=md)).session
        chat_request.session_id = session.session_id

        async def direct_once(out: Samples) -> None:
            start = time.perf_counter()
            first, text = 0.0, ""
            async for message in generation.GenerateStream(direct_request):
                if message.HasField("delta"):
                    first = first or time.perf_counter() - start
                else:
                    text = message.final.choices[0].text
            out.total.append(time.perf_counter() - start)
            out.ttft.append(first)
            out.texts.append(text)

        prompt_mismatches = 0
        stages: dict[str, list[float]] = {s: [] for s in (*STAGES, "unaccounted")}

        async def gateway_once(out: Samples) -> None:
            nonlocal prompt_mismatches
            start = time.perf_counter()
            first, final = 0.0, None
            async for message in chat.Chat(chat_request, metadata=md):
                kind = message.WhichOneof("event")
                if kind == "delta":
                    first = first or time.perf_counter() - start
                elif kind == "session":
                    s = message.session
                    if s.prompt != rendered.prompt or s.prompt_tokens != len(rendered.token_ids):
                        prompt_mismatches += 1
                else:
                    final = message.final
            out.total.append(time.perf_counter() - start)
            out.ttft.append(first)
            if final is None:
                raise RuntimeError("Chat ended without a final message")
            out.texts.append(final.text)
            for stage in STAGES:
                stages[stage].append(getattr(final.timings, f"{stage}_seconds"))
            # What no stage covers (ttft is part of generation).
            t = final.timings
            stages["unaccounted"].append(t.total_seconds - t.session_read_seconds - t.template_seconds
                                         - t.generation_seconds - t.reward_seconds - t.session_write_seconds)
            # Untimed: pop the exchange so the next Chat sees the same (empty) history.
            await chat.Undo(chat_pb2.UndoRequest(session_id=session.session_id), metadata=md)

        for _ in range(warmup):
            await direct_once(Samples())
            await gateway_once(Samples())
        prompt_mismatches = 0
        stages = {s: [] for s in (*STAGES, "unaccounted")}
        direct, gateway = Samples(), Samples()
        for i in range(requests):  # interleaved, alternating who goes first
            if i % 2 == 0:
                await direct_once(direct)
                await gateway_once(gateway)
            else:
                await gateway_once(gateway)
                await direct_once(direct)
        return Result(direct, gateway, stages, prompt_mismatches, len(rendered.token_ids))
    finally:
        for channel in channels.values():
            await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", default=".models/tiny")
    parser.add_argument("--requests", type=int, default=50, help="sequential requests per side")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests per side first")
    args = parser.parse_args()
    models = Path(args.models_dir).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    print(f"logs in {tmp}", flush=True)
    redis = RedisProcess(free_port(), tmp / "redis").start()
    procs: list[ManagedProcess] = []
    try:
        procs, addresses = start_stack(models, tmp, redis.url)
        r = asyncio.run(run(addresses, args.requests, args.max_tokens, args.warmup))
    finally:
        stop_all(procs)
        redis.stop()

    direct, gateway, stages = r.direct, r.gateway, r.stages
    same_text = all(t == direct.texts[0] for t in direct.texts + gateway.texts)
    print()
    print(f"{args.requests} sequential requests each way, interleaved; max_tokens {args.max_tokens}, "
          f"temperature 0, prompt {r.prompt_tokens} tokens")
    print(f"  gateway prompt identical to the direct one on every request: {r.prompt_mismatches == 0}; "
          f"identical answers: {same_text}")
    print(f"  {'path':34s} {'p50 ms':>8s} {'p99 ms':>8s} {'TTFT p50 ms':>12s}")
    print(f"  {'GenerationService.GenerateStream':34s} {p50(direct.total):8.2f} {pct(direct.total, 0.99):8.2f} "
          f"{p50(direct.ttft):12.2f}")
    print(f"  {'ChatService.Chat (gateway)':34s} {p50(gateway.total):8.2f} {pct(gateway.total, 0.99):8.2f} "
          f"{p50(gateway.ttft):12.2f}")
    print("  gateway stage timings (ChatFinal.timings):")
    for stage, values in stages.items():
        print(f"    {stage:14s} p50 {p50(values):8.2f} ms  p99 {pct(values, 0.99):8.2f} ms")
    print(f"added latency gateway - direct: p50 {p50(gateway.total) - p50(direct.total):+.2f} ms, "
          f"p99 {pct(gateway.total, 0.99) - pct(direct.total, 0.99):+.2f} ms (aim <= 10 ms at p50)")


if __name__ == "__main__":
    main()
