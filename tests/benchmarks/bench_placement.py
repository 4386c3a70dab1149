"""Does keeping the generation service off its engine's cores pay? One service, placement
alternated wave by wave.

On CPU, vLLM binds the model worker's OpenMP threads to cores and reserves the rest; the service
(`frontend_off_engine_cores`, default on) then moves its own threads to the reserved cores. This
machine's speed drifts by 10-20 % between runs, more than the effect, so comparing two runs of
`bench_generation` cannot tell. Here one service (started with the setting off) serves every
wave; before each wave this script sets the placement of the service's threads and its own:
"placed" = both on the cores the engine is not bound to, "free" = both on every allowed core.
The two alternate (ABBA order) for `--pairs` pairs at each concurrency, and it prints the median
throughput of each and the median of the per-pair ratios placed / free.

Run: `python -m tests.benchmarks.bench_placement --models-dir .models/tiny`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
from pathlib import Path

import grpc

from chatstack.core.cpu_placement import allowed_cpus, engine_cpus, pin_process
from chatstack.core.process import free_port, start_grpc_service
from chatstack.generation.config import GenerationConfig
from chatstack.v1 import generation_pb2_grpc
from tests.benchmarks.bench_generation import (
    ENGINE_FIELDS,
    GENERATION_SERVICE,
    grpc_stream,
    make_prompt,
    stream_request,
    wave,
)

#: The service's settings (it starts with the placement off; this script places it per wave).
SETTINGS = (*ENGINE_FIELDS, "max_in_flight", "log_level")


async def alternate(address: str, service_pid: int, levels: list[int], pairs: int, tokens: int
                    ) -> dict[tuple[str, int], list[float]]:
    """Throughput of each wave, by (placement, concurrency)."""
    every = allowed_cpus()
    engine = engine_cpus(service_pid)
    if not engine or not every - engine:
        raise SystemExit(f"nothing to compare: engine cores {sorted(engine)}, allowed {sorted(every)}")
    placements = {"placed": every - engine, "free": every}
    print(f"engine bound to CPUs {sorted(engine)}; placed = CPUs {sorted(every - engine)}", flush=True)
    request = stream_request(make_prompt(32), tokens)
    out: dict[tuple[str, int], list[float]] = {(p, c): [] for p in placements for c in levels}
    async with grpc.aio.insecure_channel(address) as channel:
        one = grpc_stream(generation_pb2_grpc.GenerationServiceStub(channel), request)
        await wave(one, max(levels))  # warm-up
        try:
            for i in range(pairs):
                for name in ("placed", "free") if i % 2 == 0 else ("free", "placed"):
                    pin_process(service_pid, placements[name])
                    pin_process(os.getpid(), placements[name])
                    for c in levels:
                        out[(name, c)].append((await wave(one, c)).throughput)
        finally:
            pin_process(os.getpid(), every)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", default=".models/tiny")
    parser.add_argument("--concurrency", default="16,64", help="comma-separated stream counts")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=12, help="placed/free wave pairs per level")
    parser.add_argument("--stream-interval", default="1,4", help="comma-separated values, one service each")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    for k in (int(v) for v in args.stream_interval.split(",")):
        port = free_port()
        proc = start_grpc_service(
            "generation-placement", "generation", port, free_port(),
            Path(tempfile.mkdtemp(prefix="bench-placement-")),
            GenerationConfig(model=str(Path(args.models_dir, "lm").resolve()), max_num_seqs=64,
                             cpu_kvcache_space_gib=2, max_in_flight=256, stream_interval=k, log_level="WARNING",
                             frontend_off_engine_cores=False).cli_args(*SETTINGS),
            health_service=GENERATION_SERVICE, timeout=300)
        try:
            assert proc.proc is not None
            result = asyncio.run(alternate(f"127.0.0.1:{port}", proc.proc.pid, levels, args.pairs, args.tokens))
        finally:
            proc.stop(60)
        for c in levels:
            placed, free = result[("placed", c)], result[("free", c)]
            ratios = [a / b for a, b in zip(placed, free, strict=True)]
            print(f"stream_interval {k}, C={c}: placed {statistics.median(placed):.0f} tokens/s, free "
                  f"{statistics.median(free):.0f} (medians of {len(ratios)}); ratio placed / free: median "
                  f"{statistics.median(ratios):.3f}, range {min(ratios):.2f}-{max(ratios):.2f}", flush=True)


if __name__ == "__main__":
    main()
