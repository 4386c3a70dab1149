"""The services' event loop: the standard library's asyncio vs uvloop, the whole Chat path.

Two identical stacks (tokenizer, session, generation, reward, gateway; one Redis), one with every
service on `--event-loop asyncio`, the other on `--event-loop uvloop`. Alternating waves (A, B |
B, A | ...) of C closed-loop clients chatting for S seconds each (a new session per Chat, T
tokens, reward scoring as `--scoring` says); only one stack is loaded at a time. Prints chats/s,
client TTFT p50/p95 and server CPU ms per Chat for each loop, and the ratios uvloop / asyncio.

Run: `python -m tests.benchmarks.bench_event_loop --models-dir .models/tiny`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from chatstack.core.process import ManagedProcess, free_port
from chatstack.core.redis_process import RedisProcess
from chatstack.v1 import chat_pb2, chat_pb2_grpc
from tests.benchmarks.bench_gateway import API_KEY, MESSAGE, start_stack, stop_all
from tests.benchmarks.measure import cpu_seconds

LOOPS = ("asyncio", "uvloop")
SERVICES = ("TOKENIZER", "SESSION", "GENERATION", "REWARD", "GATEWAY")


@dataclass
class Totals:
    """One loop's measurements summed over its waves."""

    chats: int = 0
    seconds: float = 0.0
    ttft: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)

    def cpu_ms_per_chat(self) -> float:
        return 1e3 * sum(self.cpu.values()) / max(1, self.chats)


async def wave(address: str, clients: int, seconds: float, tokens: int) -> tuple[int, list[float]]:
    """C clients chatting for `seconds`; returns (chats, TTFTs)."""
    md = (("authorization", f"Bearer {API_KEY}"),)
    request = chat_pb2.ChatRequest(message=MESSAGE, options=chat_pb2.ChatOptions(
        max_tokens=tokens, temperature=1.0))
    ttfts: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        end = time.monotonic() + seconds

        async def client() -> None:
            while time.monotonic() < end:
                started, first = time.perf_counter(), 0.0
                async for event in stub.Chat(request, metadata=md, timeout=60):
                    if not first and event.WhichOneof("event") == "delta":
                        first = time.perf_counter() - started
                ttfts.append(first)

        await asyncio.gather(*(client() for _ in range(clients)))
    return len(ttfts), ttfts


def start_with_loop(loop: str, models: Path, log_dir: Path, redis_url: str,
                    scoring: str) -> tuple[list[ManagedProcess], dict[str, str]]:
    """One stack whose services all run `loop` (set through their env settings)."""
    saved = dict(os.environ)
    os.environ.update({f"CHATSTACK_{s}_EVENT_LOOP": loop for s in SERVICES})
    os.environ["CHATSTACK_GATEWAY_SINGLE_ANSWER_SCORING"] = scoring
    try:
        return start_stack(models, log_dir / loop, redis_url)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", default=".models/tiny")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one wave")
    parser.add_argument("--rounds", type=int, default=4, help="waves per loop")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--scoring", choices=("sync", "async", "off"), default="sync")
    args = parser.parse_args()
    models, tmp = Path(args.models_dir).resolve(), Path(tempfile.mkdtemp(prefix="bench-event-loop-"))
    redis = RedisProcess(free_port(), tmp / "redis").start()
    stacks: dict[str, tuple[list[ManagedProcess], dict[str, str]]] = {}
    totals = {loop: Totals() for loop in LOOPS}
    try:
        for loop in LOOPS:
            (tmp / loop).mkdir()
            print(f"starting the {loop} stack ...", flush=True)
            stacks[loop] = start_with_loop(loop, models, tmp, redis.url, args.scoring)
            asyncio.run(wave(stacks[loop][1]["gateway"], args.clients, 3.0, args.tokens))  # warm-up
        for r in range(args.rounds):
            for loop in LOOPS if r % 2 == 0 else reversed(LOOPS):
                procs, addresses = stacks[loop]
                before = {p.name: cpu_seconds(p.proc.pid) for p in procs}
                started = time.perf_counter()
                chats, ttfts = asyncio.run(wave(addresses["gateway"], args.clients, args.seconds, args.tokens))
                t = totals[loop]
                t.seconds += time.perf_counter() - started
                t.chats += chats
                t.ttft += ttfts
                for p in procs:
                    t.cpu[p.name] = t.cpu.get(p.name, 0.0) + cpu_seconds(p.proc.pid) - before[p.name]
                print(f"  round {r + 1} {loop:8s} {chats / args.seconds:6.1f} chats/s", flush=True)
    finally:
        for procs, _ in stacks.values():
            stop_all(procs)
        redis.stop()
    print(f"\n{args.rounds} waves x {args.seconds:g} s per loop, {args.clients} clients, {args.tokens} tokens, "
          f"scoring {args.scoring}")
    print(f"  {'loop':8s} {'chats/s':>8s} {'TTFT p50':>9s} {'TTFT p95':>9s} {'CPU ms/chat':>12s}  per service")
    for loop, t in totals.items():
        q = statistics.quantiles(t.ttft, n=20)
        per = " ".join(f"{name.split('-')[0]} {1e3 * s / max(1, t.chats):.1f}" for name, s in t.cpu.items())
        print(f"  {loop:8s} {t.chats / t.seconds:8.1f} {1e3 * statistics.median(t.ttft):9.1f} "
              f"{1e3 * q[18]:9.1f} {t.cpu_ms_per_chat():12.1f}  {per}")
    a, b = totals["asyncio"], totals["uvloop"]
    print(f"uvloop / asyncio: chats/s {b.chats / b.seconds / (a.chats / a.seconds):.3f}, "
          f"CPU per chat {b.cpu_ms_per_chat() / a.cpu_ms_per_chat():.3f}, "
          f"TTFT p50 {statistics.median(b.ttft) / statistics.median(a.ttft):.3f}")


if __name__ == "__main__":
    main()
