"""Structured output's cost: streams under a JSON-schema constraint vs free text, on one generation
service (the tiny model), in alternating waves (this 2-core machine drifts 10-20 % between runs).

Each wave runs C concurrent GenerateStream calls of exactly T tokens: free text with ignore_eos,
constrained text with a schema whose instances are longer than T tokens (an array of 200
integers), so both sides generate T tokens per stream. For each concurrency (1, 8, 32) and round,
a free wave and a constrained wave run back to back, their order alternating by round; the
report gives per side the median over rounds of the aggregate tokens/s and of the p50 TTFT, and
the constrained/free ratios of the per-round pairs (median).

Run: `python -m tests.benchmarks.bench_structured --models-dir .models/tiny`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from chatstack.catalog import GENERATION
from chatstack.core.process import free_port, start_grpc_service
from chatstack.v1 import common_pb2, generation_pb2, generation_pb2_grpc

SCHEMA = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 999},
          "minItems": 200, "maxItems": 200}
PROMPT = [1, 300, 301, 302, 303, 304, 305, 306]


@dataclass(frozen=True)
class Wave:
    """One wave's aggregate tokens/s and p50 time to first token."""

    tokens_per_second: float
    ttft_p50: float


def request(tokens: int, constrained: bool, seed: int, prompt: list[int] = PROMPT) -> generation_pb2.GenerateStreamRequest:
    sampling = generation_pb2.SamplingParams(max_tokens=tokens, temperature=1.0, seed=seed,
                                             ignore_eos=not constrained)
    if constrained:
        sampling.constraint.CopyFrom(common_pb2.OutputConstraint(json_schema=json.dumps(SCHEMA)))
    return generation_pb2.GenerateStreamRequest(token_ids=common_pb2.TokenIds(ids=prompt), sampling=sampling)


async def one_stream(stub: generation_pb2_grpc.GenerationServiceStub,
                     req: generation_pb2.GenerateStreamRequest) -> tuple[float, int]:
    started, first, tokens = time.perf_counter(), 0.0, 0
    async for message in stub.GenerateStream(req, timeout=600):
        if message.HasField("delta"):
            if not first:
                first = time.perf_counter() - started
            tokens += len(message.delta.token_ids)
    return first, tokens


async def wave(stub: generation_pb2_grpc.GenerationServiceStub, concurrency: int, tokens: int,
               constrained: bool, round_: int) -> Wave:
    started = time.perf_counter()
    results = await asyncio.gather(*(one_stream(stub, request(tokens, constrained, round_ * 1000 + i))
                                     for i in range(concurrency)))
    wall = time.perf_counter() - started
    assert all(t == tokens for _, t in results), [t for _, t in results]  # both sides: T tokens each
    return Wave(sum(t for _, t in results) / wall, statistics.median(f for f, _ in results))


async def run(address: str, args: argparse.Namespace) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = generation_pb2_grpc.GenerationServiceStub(channel)
        await wave(stub, 2, args.tokens, True, 99)  # warm-up: compile the grammar once, as a cache would
        await wave(stub, 2, args.tokens, False, 99)
        print(f"{'streams':>7} {'free tok/s':>11} {'json tok/s':>11} {'ratio':>6} "
              f"{'free TTFT':>10} {'json TTFT':>10} {'ratio':>6}")
        for concurrency in args.concurrency:
            free: list[Wave] = []
            constrained: list[Wave] = []
            for r in range(args.rounds):
                order = (False, True) if r % 2 == 0 else (True, False)
                for is_constrained in order:
                    w = await wave(stub, concurrency, args.tokens, is_constrained, r)
                    (constrained if is_constrained else free).append(w)
            pairs = list(zip(constrained, free, strict=True))
            tps = statistics.median(c.tokens_per_second / f.tokens_per_second for c, f in pairs)
            ttft = statistics.median(c.ttft_p50 / f.ttft_p50 for c, f in pairs)
            print(f"{concurrency:>7} {statistics.median(w.tokens_per_second for w in free):>11.0f} "
                  f"{statistics.median(w.tokens_per_second for w in constrained):>11.0f} {tps:>6.2f} "
                  f"{statistics.median(w.ttft_p50 for w in free) * 1000:>8.1f}ms "
                  f"{statistics.median(w.ttft_p50 for w in constrained) * 1000:>8.1f}ms {ttft:>6.2f}")


def wave_arguments(description: str) -> argparse.ArgumentParser:
    """The options of an alternating-wave comparison (this one and bench_structured_http)."""
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("--models-dir", default=".models/tiny")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    return parser


def main() -> None:
    args = wave_arguments(__doc__ or "").parse_args()
    port, metrics_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as logs:
        proc = start_grpc_service("generation", "generation", port, metrics_port, Path(logs),
                                  ("--model", f"{args.models_dir}/lm", "--max-in-flight", "256"),
                                  health_service=GENERATION.proto_service, timeout=300)
        try:
            asyncio.run(run(f"127.0.0.1:{port}", args))
        finally:
            proc.stop()


if __name__ == "__main__":
    main()
