"""Streaming generation: the gRPC GenerationService vs the same vLLM AsyncLLM in-process vs `vllm serve`.

C concurrent streams (default 16 and 64) of exactly T tokens each (ignore_eos, greedy, the same
prompt token ids), on the same model with the same engine arguments; for each engine the
aggregate throughput (generated tokens/s over the wall time of a wave) and the p50 time to first
token. The engines run one after another (never two at once), each with a warm-up wave:

  (a) our GenerationService in its own process, GenerateStream over grpc.aio;
  (b) `AsyncLLM.from_engine_args(engine_args(GenerationConfig(...)))` in this process, the
      baseline: the same engine args and `vllm_sampling_params` the service uses;
  (c) vLLM's OpenAI server (`vllm.entrypoints.openai.api_server`), streamed `/v1/completions`
      with the prompt as token ids, over aiohttp.

CPU placement (`--placement`, default off-engine): on CPU, vLLM binds the model worker's OpenMP
threads to cores but keeps nothing else off them. With `off-engine`, the service keeps its own
threads off those cores (its default, `frontend_off_engine_cores`), the in-process baseline's
process does the same once its engine is up, and this script's client threads stay off them while
they drive (a) and (c); `vllm serve` runs as shipped. With `none`, nothing is placed (the service
gets `--no-frontend-off-engine-cores`).

Run: `python -m tests.benchmarks.bench_generation --models-dir .models/tiny`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from chatstack.catalog import GENERATION
from chatstack.core.cpu_placement import allowed_cpus, off_engine_cores
from chatstack.core.process import ManagedProcess, free_port, start_grpc_service, wait_until
from chatstack.generation.config import GenerationConfig
from chatstack.v1 import common_pb2, generation_pb2, generation_pb2_grpc
from tests.benchmarks.measure import sse_events

GENERATION_SERVICE = GENERATION.proto_service

# One stream: (seconds to the first token, generated token ids).
Stream = Callable[[], Awaitable[tuple[float, list[int]]]]


@dataclass
class Side:
    """Measurements of one engine at one concurrency."""

    tokens: int = 0
    seconds: float = 0.0
    ttfts: list[float] = field(default_factory=list)
    outputs: list[list[int]] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.tokens / self.seconds if self.seconds else float("nan")

    @property
    def ttft_p50_ms(self) -> float:
        return statistics.median(self.ttfts) * 1e3 if self.ttfts else float("nan")


@dataclass(frozen=True)
class Load:
    """What every engine is asked to do."""

    prompt: list[int]
    tokens: int
    levels: list[int]
    rounds: int


#: The engine settings all three sides share: the service gets them as flags, the in-process
#: baseline uses the config itself, `vllm serve` gets its own flags for them.
ENGINE_FIELDS = ("model", "dtype", "max_model_len", "max_num_seqs", "cpu_kvcache_space_gib", "seed",
                 "enforce_eager", "stream_interval", "frontend_off_engine_cores")


@contextmanager
def client_placed(engine: GenerationConfig, engine_root_pid: int) -> Iterator[None]:
    """While driving an engine under `engine_root_pid`: this process off its cores, when the
    service is placed that way too (`frontend_off_engine_cores`)."""
    with off_engine_cores(engine_root_pid, enabled=engine.frontend_off_engine_cores) as cores:
        print(f"    client on CPUs {sorted(cores or allowed_cpus())}", flush=True)
        yield


def make_prompt(n: int, vocab: int = 2048, seed: int = 7) -> list[int]:
    """n fixed pseudo-random ids clear of the special tokens at the bottom of the vocabulary."""
    rng = random.Random(seed)
    return [rng.randrange(16, vocab) for _ in range(n)]


async def wave(stream: Stream, concurrency: int) -> Side:
    """`concurrency` streams started together; throughput over the wave's wall time."""
    start = time.perf_counter()
    results = await asyncio.gather(*[stream() for _ in range(concurrency)])
    side = Side(seconds=time.perf_counter() - start)
    for ttft, ids in results:
        side.tokens += len(ids)
        side.ttfts.append(ttft)
        side.outputs.append(ids)
    return side


async def measure(stream_for: Callable[[int], Stream], load: Load) -> dict[int, Side]:
    """A warm-up wave, then `rounds` waves per concurrency level, levels interleaved."""
    await wave(stream_for(max(load.levels)), max(load.levels))
    out = {c: Side() for c in load.levels}
    for _ in range(load.rounds):
        for c in load.levels:
            side = await wave(stream_for(c), c)
            out[c].tokens += side.tokens
            out[c].seconds += side.seconds
            out[c].ttfts += side.ttfts
            out[c].outputs = out[c].outputs or side.outputs
    return out


# -- (a) the gRPC service ---------------------------------------------------------------------
def stream_request(prompt: list[int], tokens: int) -> generation_pb2.GenerateStreamRequest:
    """Exactly `tokens` greedy tokens after `prompt` (ignore_eos)."""
    return generation_pb2.GenerateStreamRequest(
        token_ids=common_pb2.TokenIds(ids=prompt),
        sampling=generation_pb2.SamplingParams(n=1, max_tokens=tokens, temperature=0.0, ignore_eos=True))


def grpc_stream(stub: generation_pb2_grpc.GenerationServiceStub,
                request: generation_pb2.GenerateStreamRequest) -> Stream:
    """One GenerateStream call, timed to its first token."""
    async def one() -> tuple[float, list[int]]:
        start = time.perf_counter()
        ttft, ids = 0.0, []
        async for message in stub.GenerateStream(request):
            if message.HasField("delta") and message.delta.token_ids:
                if not ids:
                    ttft = time.perf_counter() - start
                ids += message.delta.token_ids
        return ttft, ids
    return one


async def grpc_side(address: str, load: Load) -> dict[int, Side]:
    request = stream_request(load.prompt, load.tokens)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = generation_pb2_grpc.GenerationServiceStub(channel)
        return await measure(lambda _: grpc_stream(stub, request), load)


def run_grpc(engine: GenerationConfig, load: Load, log_dir: Path) -> dict[int, Side]:
    port = free_port()
    service = engine.model_copy(update={"max_in_flight": max(256, 2 * max(load.levels)), "log_level": "WARNING"})
    flags = service.cli_args(*ENGINE_FIELDS, "max_in_flight", "log_level")
    proc = start_grpc_service("generation-bench", "generation", port, free_port(), log_dir, flags,
                              health_service=GENERATION_SERVICE, timeout=300)
    try:
        assert proc.proc is not None
        with client_placed(engine, proc.proc.pid):
            return asyncio.run(grpc_side(f"127.0.0.1:{port}", load))
    finally:
        proc.stop(60)


# -- (b) the same AsyncLLM in this process ----------------------------------------------------
async def in_process_side(config: GenerationConfig, load: Load) -> dict[int, Side]:
    from vllm.v1.engine.async_llm import AsyncLLM

    from chatstack.core.vllm_config import engine_args
    from chatstack.generation.engine import vllm_sampling_params
    from chatstack.generation.model import SamplingOptions

    params = vllm_sampling_params(SamplingOptions(n=1, temperature=0.0, max_tokens=load.tokens,
                                                  ignore_eos=True), load.tokens)
    llm = AsyncLLM.from_engine_args(engine_args(config, stream_interval=config.stream_interval))
    try:
        # The same placement as the service's: this process off the engine's cores, once it is up.
        with client_placed(config, os.getpid()):
            return await measure(in_process_streams(llm, params, load.prompt), load)
    finally:
        llm.shutdown()
        # vLLM's shutdown leaves this frame referenced (a stored traceback); drop the engine so
        # its __del__ does not run at interpreter exit, when the modules it needs are gone; and
        # collect now, so its finalizers run before `vllm serve` (also our child) is measured.
        del llm
        gc.collect()


def in_process_streams(llm: Any, params: Any, prompt: list[int]) -> Callable[[int], Stream]:
    """Streams straight from AsyncLLM.generate, as VllmGenerationEngine consumes them."""
    counter = 0

    def stream_for(_: int) -> Stream:
        async def one() -> tuple[float, list[int]]:
            nonlocal counter
            counter += 1
            start = time.perf_counter()
            ttft, ids = 0.0, []
            async for out in llm.generate({"prompt_token_ids": prompt}, params, f"bench-{counter}"):
                for o in out.outputs:
                    if o.token_ids:
                        if not ids:
                            ttft = time.perf_counter() - start
                        ids += o.token_ids
            return ttft, ids
        return one

    return stream_for


# -- (c) vllm serve ---------------------------------------------------------------------------
def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_vllm_serve(engine: GenerationConfig, port: int, log_dir: Path, timeout: float) -> ManagedProcess:
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", engine.model,
            "--host", "127.0.0.1", "--port", str(port), "--dtype", engine.dtype,
            "--max-model-len", str(engine.max_model_len), "--max-num-seqs", str(engine.max_num_seqs),
            "--enforce-eager" if engine.enforce_eager else "--no-enforce-eager", "--seed", str(engine.seed),
            "--disable-uvicorn-access-log", "--stream-interval", str(engine.stream_interval)]
    proc = ManagedProcess("vllm-serve-bench", argv, log_dir / "vllm-serve-bench.log",
                          env={"VLLM_CPU_KVCACHE_SPACE": f"{engine.cpu_kvcache_space_gib:g}"}).start()
    try:
        wait_until(lambda: _http_ok(f"http://127.0.0.1:{port}/health"), timeout,
                   f"vllm serve on port {port}", alive=proc.alive, interval=0.5)
    except (TimeoutError, RuntimeError) as exc:
        proc.stop(10)
        raise RuntimeError(f"{exc}\n--- {proc.log_path} ---\n{proc.tail()}") from exc
    return proc


async def http_side(base: str, model: str, load: Load) -> dict[int, Side]:
    import aiohttp

    body = {"model": model, "prompt": load.prompt, "max_tokens": load.tokens, "temperature": 0.0,
            "ignore_eos": True, "stream": True, "return_token_ids": True}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=None)) as session:
        def stream_for(_: int) -> Stream:
            async def one() -> tuple[float, list[int]]:
                start = time.perf_counter()
                ttft, ids = 0.0, []
                async with session.post(f"{base}/v1/completions", json=body) as reply:
                    reply.raise_for_status()
                    async for event in sse_events(reply.content):
                        for choice in event.get("choices", []):
                            new = choice.get("token_ids") or []
                            if new and not ids:
                                ttft = time.perf_counter() - start
                            ids += new
                return ttft, ids
            return one

        return await measure(stream_for, load)


def run_vllm_serve(engine: GenerationConfig, load: Load, log_dir: Path, timeout: float) -> dict[int, Side]:
    port = free_port()
    proc = start_vllm_serve(engine, port, log_dir, timeout)
    try:
        assert proc.proc is not None
        with client_placed(engine, proc.proc.pid):
            return asyncio.run(http_side(f"http://127.0.0.1:{port}", engine.model, load))
    finally:
        proc.stop(60)


# -- report -----------------------------------------------------------------------------------
def report(load: Load, engine: GenerationConfig, results: dict[str, dict[int, Side]]) -> None:
    names = {"grpc": "gRPC GenerationService", "inproc": "in-process AsyncLLM", "serve": "vllm serve (HTTP)"}
    first = results["inproc"][load.levels[0]].outputs[0]
    same = all(out == first for r in results.values() for side in r.values() for out in side.outputs)
    print(f"{load.rounds} waves x C streams of {load.tokens} tokens (ignore_eos, greedy), "
          f"stream_interval {engine.stream_interval}, "
          f"placement {'off-engine' if engine.frontend_off_engine_cores else 'none'}, "
          f"prompt {len(load.prompt)} token ids; identical tokens on every stream and engine: {same}")
    print(f"  {'engine':24s} {'C':>4s} {'tokens/s':>10s} {'TTFT p50 ms':>12s}")
    for key, result in results.items():
        for c in load.levels:
            side = result[c]
            print(f"  {names[key]:24s} {c:4d} {side.throughput:10.0f} {side.ttft_p50_ms:12.2f}")
    for c in load.levels:
        g, b = results["grpc"][c], results["inproc"][c]
        print(f"C={c}: ratio gRPC / in-process throughput: {g.throughput / b.throughput:.3f} (aim >= 0.95)")
        print(f"C={c}: TTFT p50 added by gRPC: {g.ttft_p50_ms - b.ttft_p50_ms:+.2f} ms (aim <= 2 ms)")
        if "serve" in results:
            s = results["serve"][c]
            print(f"C={c}: ratio gRPC / vllm serve throughput: {g.throughput / s.throughput:.3f} (aim > 1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", default=".models/tiny")
    parser.add_argument("--concurrency", default="16,64", help="comma-separated stream counts")
    parser.add_argument("--tokens", type=int, default=128, help="generated tokens per stream")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="measured waves per concurrency level")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-num-seqs", type=int, default=64)
    parser.add_argument("--cpu-kvcache-space-gib", type=float, default=2.0)
    parser.add_argument("--stream-interval", type=int, default=1,
                        help="vLLM stream_interval for all three engines (1 = a message per token)")
    parser.add_argument("--placement", choices=("off-engine", "none"), default="off-engine",
                        help="keep frontends and the client off the engine's cores (see above)")
    parser.add_argument("--skip-vllm-serve", action="store_true")
    parser.add_argument("--serve-timeout", type=float, default=300.0, help="seconds to wait for vllm serve")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    engine = GenerationConfig(model=str(Path(args.models_dir, "lm").resolve()), dtype=args.dtype,
                              max_model_len=2048, max_num_seqs=args.max_num_seqs,
                              cpu_kvcache_space_gib=args.cpu_kvcache_space_gib, seed=0,
                              stream_interval=args.stream_interval,
                              frontend_off_engine_cores=args.placement == "off-engine")
    load = Load(prompt=make_prompt(args.prompt_tokens), tokens=args.tokens, levels=levels, rounds=args.rounds)
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = f"{engine.cpu_kvcache_space_gib:g}"
    log_dir = Path(tempfile.mkdtemp(prefix="bench-generation-"))
    results: dict[str, dict[int, Side]] = {}
    print(f"logs in {log_dir}", flush=True)
    print("(a) gRPC GenerationService ...", flush=True)
    results["grpc"] = run_grpc(engine, load, log_dir)
    print("(b) in-process AsyncLLM ...", flush=True)
    results["inproc"] = asyncio.run(in_process_side(engine, load))
    if not args.skip_vllm_serve:
        print("(c) vllm serve ...", flush=True)
        try:
            results["serve"] = run_vllm_serve(engine, load, log_dir, args.serve_timeout)
        except RuntimeError as exc:
            print(f"vllm serve failed, left out: {exc}", flush=True)
    print()
    report(load, engine, results)


if __name__ == "__main__":
    main()
