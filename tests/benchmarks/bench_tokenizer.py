"""Batch-encode throughput: the gRPC tokenizer service vs in-process `tokenizers`.

Same inputs (64 texts of ~1 KB), same tokenizer, same machine; prints the ratio.
Run: `make bench` (or `python -m tests.benchmarks.bench_tokenizer --models-dir .models/tiny`).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from tokenizers import Tokenizer

from chatstack.core.process import free_port, start_grpc_service
from chatstack.v1 import tokenizer_pb2, tokenizer_pb2_grpc


def make_texts(n: int = 64, size: int = 1024, seed: int = 7) -> list[str]:
    """n pseudo-random texts of about `size` characters, mixed scripts."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz     ,.éüß中文→😀0123456789"
    return ["".join(rng.choice(alphabet) for _ in range(size)) for _ in range(n)]


def measure(fn: Callable[[], object], seconds: float) -> tuple[float, list[float]]:
    """Calls per second of fn over about `seconds`, plus per-call latencies."""
    for _ in range(3):
        fn()  # warm-up
    lat: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t)
    return len(lat) / (time.perf_counter() - start), lat


def in_process(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    """The baseline: what an in-process caller does to get the ids of a batch."""
    return [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", default=".models/tiny")
    parser.add_argument("--seconds", type=float, default=10.0, help="per side, in total")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    model_dir = Path(args.models_dir) / "lm"
    texts = make_texts()
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))

    port = free_port()
    proc = start_grpc_service("tokenizer-bench", "tokenizer", port, free_port(),
                              Path(tempfile.mkdtemp()), ("--model-dir", str(model_dir)))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = tokenizer_pb2_grpc.TokenizerServiceStub(channel)
            request = tokenizer_pb2.EncodeRequest(texts=texts, add_special_tokens=True)
            same = [list(e.ids) for e in stub.Encode(request).encodings] == in_process(tok, texts)
            # Interleave short rounds so drift in machine load hits both sides alike.
            base_lat, grpc_lat = [], []
            for _ in range(args.rounds):
                base_lat += measure(lambda: in_process(tok, texts), args.seconds / args.rounds)[1]
                grpc_lat += measure(lambda: stub.Encode(request), args.seconds / args.rounds)[1]
            base_rps, grpc_rps = len(base_lat) / sum(base_lat), len(grpc_lat) / sum(grpc_lat)
    finally:
        proc.stop()

    n = len(texts)
    print(f"batch-encode of {n} texts x ~1 KB (identical results: {same})")
    print(f"  in-process tokenizers : {base_rps * n:10.0f} texts/s  "
          f"p50 {statistics.median(base_lat) * 1e3:.2f} ms")
    print(f"  gRPC tokenizer service: {grpc_rps * n:10.0f} texts/s  "
          f"p50 {statistics.median(grpc_lat) * 1e3:.2f} ms")
    print(f"  ratio gRPC / in-process: {grpc_rps / base_rps:.2f} (aim >= 0.80)")


if __name__ == "__main__":
    main()
