"""Probe: does each streamed message reach the client when the service sends it?

A regression check for a fixed defect. Services used to be started in a new session
(`setsid`), which on Linux also puts them in their own scheduler autogroup. With a vLLM engine
keeping this machine's two cores busy, the kernel then left the client's autogroup without CPU
for up to ~250 ms: the service wrote its first delta ~6 ms after the request (grpc traces show
the TCP write), but the client read it only with the rest of the stream (8-21 of 30 streams held
back). `ManagedProcess` now keeps its children in the caller's session (0 of 30).

This script starts a generation service on the tiny model, runs sequential streams and prints,
per stream, the client's TTFT next to the service's, and how many streams were held back by more
than 50 ms. Its last line splits the p50 TTFT into the service's own (arrival in the engine ->
first token) and what the transport and the client add on top.

Run: `python -m tests.benchmarks.probe_stream_delivery --models-dir .models/tiny`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import grpc

from chatstack.catalog import GENERATION
from chatstack.core.process import free_port, start_grpc_service
from chatstack.v1 import generation_pb2_grpc
from tests.benchmarks.bench_generation import stream_request

HELD_BACK_SECONDS = 0.050


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", default=".models/tiny")
    parser.add_argument("--streams", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--stream-interval", type=int, default=4)
    args = parser.parse_args()
    port = free_port()
    proc = start_grpc_service("generation-probe", "generation", port, free_port(),
                              Path(tempfile.mkdtemp(prefix="probe-stream-")),
                              ("--model", str(Path(args.models_dir, "lm").resolve()),
                               "--stream-interval", str(args.stream_interval)),
                              health_service=GENERATION.proto_service, timeout=300)
    request = stream_request(list(range(100, 132)), args.tokens)
    client_ttfts, service_ttfts, lates = [], [], []
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = generation_pb2_grpc.GenerationServiceStub(channel)
            for i in range(args.streams):
                start, first, final = time.perf_counter(), 0.0, None
                for message in stub.GenerateStream(request, timeout=60):
                    first = first or time.perf_counter() - start
                    if message.HasField("final"):
                        final = message.final
                total = time.perf_counter() - start
                assert final is not None
                late = first - final.timings.ttft_seconds
                client_ttfts.append(first)
                service_ttfts.append(final.timings.ttft_seconds)
                lates.append(late)
                print(f"stream {i:3d}: client TTFT {first * 1e3:7.1f} ms, service TTFT "
                      f"{final.timings.ttft_seconds * 1e3:6.1f} ms, total {total * 1e3:7.1f} ms"
                      f"{'  <- held back' if late > HELD_BACK_SECONDS else ''}")
    finally:
        proc.stop(60)
    held = sum(late > HELD_BACK_SECONDS for late in lates)
    print(f"{held} of {args.streams} streams had their first message held back by more than "
          f"{HELD_BACK_SECONDS * 1e3:.0f} ms (stream_interval {args.stream_interval})")
    print(f"TTFT p50: client {statistics.median(client_ttfts) * 1e3:.2f} ms, service "
          f"{statistics.median(service_ttfts) * 1e3:.2f} ms; added by the transport and the client "
          f"(client minus service, per stream) p50 {statistics.median(lates) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
