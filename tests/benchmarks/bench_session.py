"""Session service: GetContext latency with 10 vs 10,000 turns of history, and PushTurn
throughput beside redis-benchmark's LPUSH rate on the same redis-server.

Both sessions return the same 10 turns (same budget, same turn sizes), so the only difference
is history length. Run: `make bench` or `python -m tests.benchmarks.bench_session`.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import grpc

from chatstack.core.process import free_port, start_grpc_service
from chatstack.core.redis_process import RedisProcess
from chatstack.v1 import common_pb2, session_pb2, session_pb2_grpc

MD = (("x-chatstack-owner", "bench"),)
TURN_TOKENS = 20
BUDGET = 10 * TURN_TOKENS


async def fill(stub: session_pb2_grpc.SessionServiceStub, sid: str, n: int) -> None:
    sem = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with sem:
            await stub.PushTurn(session_pb2.PushTurnRequest(
                session_id=sid, role=common_pb2.ROLE_USER, content=f"turn {i} " + "x" * 80,
                token_count=TURN_TOKENS), metadata=MD)

    await asyncio.gather(*[one(i) for i in range(n)])


async def context_latencies(stub: session_pb2_grpc.SessionServiceStub, sid: str, n: int) -> list[float]:
    request = session_pb2.GetContextRequest(session_id=sid, token_budget=BUDGET)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        reply = await stub.GetContext(request, metadata=MD)
        out.append(time.perf_counter() - t)
        assert len(reply.turns) == 10
    return out


async def push_throughput(stub: session_pb2_grpc.SessionServiceStub, seconds: float,
                          concurrency: int) -> float:
    sids = [(await stub.CreateSession(session_pb2.CreateSessionRequest(), metadata=MD)).session.session_id
            for _ in range(concurrency)]
    count = 0
    end = time.perf_counter() + seconds

    async def worker(sid: str) -> None:
        nonlocal count
        request = session_pb2.PushTurnRequest(session_id=sid, role=common_pb2.ROLE_USER,
                                              content="hello there", token_count=3)
        while time.perf_counter() < end:
            await stub.PushTurn(request, metadata=MD)
            count += 1

    start = time.perf_counter()
    await asyncio.gather(*[worker(s) for s in sids])
    return count / (time.perf_counter() - start)


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1e3


async def run(address: str, samples: int, seconds: float, concurrency: int) -> dict[str, float]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = session_pb2_grpc.SessionServiceStub(channel)
        small = (await stub.CreateSession(session_pb2.CreateSessionRequest(), metadata=MD)).session.session_id
        large = (await stub.CreateSession(session_pb2.CreateSessionRequest(), metadata=MD)).session.session_id
        await fill(stub, small, 10)
        await fill(stub, large, 10_000)
        lat_small, lat_large = [], []
        for _ in range(5):  # interleave so drift hits both alike
            lat_small += await context_latencies(stub, small, samples // 5)
            lat_large += await context_latencies(stub, large, samples // 5)
        pushes = await push_throughput(stub, seconds, concurrency)
    return {
        "small_p50": statistics.median(lat_small) * 1e3, "small_p99": pct(lat_small, 0.99),
        "large_p50": statistics.median(lat_large) * 1e3, "large_p99": pct(lat_large, 0.99),
        "pushes": pushes,
    }


def redis_lpush_rate(port: int, clients: int) -> float:
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "lpush", "-n", "200000",
                          "-c", str(clients), "-q"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"LPUSH: ([\d.]+) requests per second", out.replace("\r", "\n"))
    return float(match.group(1)) if match else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    redis = RedisProcess(free_port(), tmp / "redis").start()
    port = free_port()
    service = start_grpc_service("session-bench", "session", port, free_port(), tmp,
                                 ("--redis-url", redis.url, "--log-level", "WARNING"))
    try:
        r = asyncio.run(run(f"127.0.0.1:{port}", args.samples, args.seconds, args.concurrency))
        lpush = redis_lpush_rate(redis.port, args.concurrency)
    finally:
        service.stop()
        redis.stop()
    print(f"GetContext (budget {BUDGET} tokens, 10 turns returned), {args.samples} calls each:")
    print(f"  10 turns of history     : p50 {r['small_p50']:.3f} ms  p99 {r['small_p99']:.3f} ms")
    print(f"  10,000 turns of history : p50 {r['large_p50']:.3f} ms  p99 {r['large_p99']:.3f} ms")
    print(f"  ratio 10,000 / 10 turns : p50 {r['large_p50'] / r['small_p50']:.2f}  "
          f"p99 {r['large_p99'] / r['small_p99']:.2f} (aim <= 1.5)")
    print(f"PushTurn through gRPC ({args.concurrency} concurrent): {r['pushes']:.0f} pushes/s")
    print(f"redis-benchmark LPUSH ({args.concurrency} clients) : {lpush:.0f} requests/s "
          f"(scale: PushTurn is {r['pushes'] / lpush:.3f} of raw LPUSH)")


if __name__ == "__main__":
    main()
