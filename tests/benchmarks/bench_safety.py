"""The safety stage's overhead: the same streamed chat completions through a gateway without the
safety stage, one with it in stream-first mode (the default), and one in holdback mode, over the
same backends (redis, tokenizer, session, generation, reward, as bench_peers starts them, and one
safety service), in alternating waves (this 2-core machine drifts 10-20 % between runs).

Each stream asks for T tokens (`max_tokens`) under a JSON schema whose instances are longer (so
every stream runs exactly T tokens: checked), temperature 1. A wave starts C streams together
(1, 8, 32); per round the three gateways run back to back, their order rotating. Reported per
gateway: the median over rounds of the aggregate tokens/s, of the wave's p50 time to first
content and of its p99 (the slowest of C); and each round's ratio (tokens/s) and difference
(TTFT) against the gateway without the stage, medians over rounds. The issue's aim, stream-first:
TTFT p50 added <= 2 ms, p99 added <= 20 ms, tokens/s >= 0.95x. Holdback's added TTFT is the delay
of W tokens (safety_window_tokens, 32), reported per token.

Run: `python -m tests.benchmarks.bench_safety --models-dir .models/tiny` (in `make bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatstack.catalog import GATEWAY, SAFETY, TINY_ENGINE_FLAGS
from chatstack.core.process import ManagedProcess, free_port, start_grpc_service, wait_until
from chatstack.core.redis_process import RedisProcess
from chatstack.gateway.auth import hash_key
from chatstack.local_stack import engine_placement, engine_placement_flags
from tests.benchmarks.bench_peers import API_KEY, engine_config, start_stack, stop_all
from tests.benchmarks.bench_structured import wave_arguments
from tests.benchmarks.bench_structured_http import FORMAT, MESSAGES, _get, _ready
from tests.benchmarks.measure import sse_events

WINDOW = 32  # the gateway's default safety_window_tokens


@dataclass(frozen=True)
class Gateway:
    """One gateway under test."""

    name: str
    base: str
    model: str = ""


@dataclass(frozen=True)
class Wave:
    """One wave's aggregate tokens/s and its time to first content, p50 and p99."""

    tokens_per_second: float
    ttft_p50: float
    ttft_p99: float


async def one_stream(session: Any, gateway: Gateway, tokens: int, seed: int) -> tuple[float, int]:
    body = {"model": gateway.model, "messages": MESSAGES, "max_tokens": tokens, "temperature": 1.0,
            "seed": seed, "stream": True, "stream_options": {"include_usage": True}, "response_format": FORMAT}
    headers = {"authorization": f"Bearer {API_KEY}"}
    started, first, used = time.perf_counter(), 0.0, 0
    async with session.post(f"{gateway.base}/v1/chat/completions", json=body, headers=headers) as reply:
        assert reply.status == 200, await reply.text()
        async for event in sse_events(reply.content):
            choices = event.get("choices", [])
            if not first and any(c["delta"].get("content") for c in choices):
                first = time.perf_counter() - started
            assert not any(c.get("finish_reason") == "content_filter" for c in choices), gateway.name
            if event.get("usage"):
                used = event["usage"]["completion_tokens"]
    return first, used


async def wave(session: Any, gateway: Gateway, concurrency: int, tokens: int, round_: int) -> Wave:
    started = time.perf_counter()
    results = await asyncio.gather(*(one_stream(session, gateway, tokens, round_ * 1000 + i)
                                     for i in range(concurrency)))
    wall = time.perf_counter() - started
    assert all(t == tokens for _, t in results), (gateway.name, [t for _, t in results])
    firsts = sorted(f for f, _ in results)
    return Wave(sum(t for _, t in results) / wall, statistics.median(firsts),
                firsts[min(len(firsts) - 1, int(len(firsts) * 0.99))])


async def run(gateways: list[Gateway], args: argparse.Namespace) -> None:
    """Rotating waves per concurrency; ratios and differences to the first gateway (no stage)."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600),
                                     connector=aiohttp.TCPConnector(limit=0)) as session:
        for gateway in gateways:  # warm-up: the grammar is compiled once, the guard's first batch run
            await wave(session, gateway, 2, args.tokens, 99)
        off = gateways[0]
        print(f"{'streams':>7} " + " ".join(f"{g.name + ' tok/s':>20} {'ratio':>5} {'TTFT p50':>9} "
                                          f"{'+':>7} {'p99':>8} {'+':>7}" for g in gateways))
        for concurrency in args.concurrency:
            waves: dict[str, list[Wave]] = {g.name: [] for g in gateways}
            for r in range(args.rounds):
                order = gateways[r % len(gateways):] + gateways[:r % len(gateways)]
                for gateway in order:
                    waves[gateway.name].append(await wave(session, gateway, concurrency, args.tokens, r))
            cells = []
            for g in gateways:
                pairs = list(zip(waves[g.name], waves[off.name], strict=True))
                ratio = statistics.median(a.tokens_per_second / b.tokens_per_second for a, b in pairs)
                p50_added = statistics.median(a.ttft_p50 - b.ttft_p50 for a, b in pairs) * 1000
                p99_added = statistics.median(a.ttft_p99 - b.ttft_p99 for a, b in pairs) * 1000
                ours = waves[g.name]
                cells.append(f"{statistics.median(w.tokens_per_second for w in ours):>20.0f} {ratio:>5.2f} "
                             f"{statistics.median(w.ttft_p50 for w in ours) * 1000:>7.1f}ms {p50_added:>+6.1f} "
                             f"{statistics.median(w.ttft_p99 for w in ours) * 1000:>6.1f}ms {p99_added:>+6.1f}")
            print(f"{concurrency:>7} " + " ".join(cells), flush=True)
            held = statistics.median(a.ttft_p50 - b.ttft_p50 for a, b in zip(
                waves["holdback"], waves[off.name], strict=True))
            print(f"{'':>7} holdback: +{held * 1000:.1f} ms to first content, "
                  f"{held * 1000 / WINDOW:.2f} ms per held token (W = {WINDOW})", flush=True)


def start_gateways(addresses: dict[str, str], safety: str, log_dir: Path, timeout: float,
                   procs: list[ManagedProcess], more: list[str]) -> list[Gateway]:
    """Two more gateways over the same backends: stream-first and holdback (`more`: flags of both)."""
    out = []
    for name, extra in (("stream_first", ()), ("holdback", ("--safety-output", "holdback"))):
        http_port = free_port()
        flags = ["--api-keys", f"bench:{hash_key(API_KEY)}", "--log-level", "WARNING",
                 "--http-port", str(http_port), "--safety-address", safety, *extra, *more]
        for backend in ("tokenizer", "session", "generation", "reward"):
            flags += [f"--{backend}-address", addresses[backend]]
        print(f"starting gateway ({name}) ...", flush=True)
        procs.append(start_grpc_service(f"gateway-{name}", "gateway", free_port(), free_port(), log_dir, flags,
                                        health_service=GATEWAY.proto_service, timeout=timeout))
        out.append(Gateway(name, f"http://127.0.0.1:{http_port}"))
    return out


def main() -> None:
    parser = wave_arguments(__doc__ or "")
    parser.add_argument("--max-num-seqs", type=int, default=64)
    parser.add_argument("--cpu-kvcache-space-gib", type=float, default=1.0)
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--gateway-flag", action="append", default=[],
                        help="a flag for both safety gateways, e.g. --gateway-flag=--safety-interval-tokens=16")
    args = parser.parse_args()
    models = Path(args.models_dir).resolve()
    engine = engine_config(models, args, **engine_placement(0))
    procs: list[ManagedProcess] = []
    with tempfile.TemporaryDirectory() as logs:
        log_dir = Path(logs)
        redis = RedisProcess(free_port(), log_dir / "redis")
        try:
            redis.start()
            http_port = free_port()
            addresses = start_stack(models, engine, redis.url, "off", log_dir, args.startup_timeout, procs,
                                    http_port)
            print("starting safety ...", flush=True)
            safety_port = free_port()
            procs.append(start_grpc_service(
                "safety", "safety", safety_port, free_port(), log_dir,
                ("--model", str(models / "guard"), *TINY_ENGINE_FLAGS, *engine_placement_flags(1),
                 "--log-level", "WARNING"), health_service=SAFETY.proto_service, timeout=args.startup_timeout))
            gateways = [Gateway("off", f"http://127.0.0.1:{http_port}"),
                        *start_gateways(addresses, f"127.0.0.1:{safety_port}", log_dir, args.startup_timeout, procs,
                                           args.gateway_flag)]
            headers = {"authorization": f"Bearer {API_KEY}"}
            for g in gateways:
                wait_until(lambda g=g: _ready(f"{g.base}/v1/models", headers), args.startup_timeout,  # type: ignore[misc]
                           f"{g.name} serving /v1/models")
            model = _get(f"{gateways[0].base}/v1/models", headers)["data"][0]["id"]
            asyncio.run(run([Gateway(g.name, g.base, model) for g in gateways], args))
        finally:
            stop_all(procs)
            redis.stop()


if __name__ == "__main__":
    main()
