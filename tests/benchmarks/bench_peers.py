"""chatstack against its peers: vLLM's own gRPC server, and SMG (Shepherd Model Gateway) over it.

Two comparisons, each run as alternating waves (A, B, A, B, ...: this 2-core machine drifts 10-20 %
between runs, so adjacent waves are compared, never a run of A with a run of B). Throughput ratios
are medians over rounds of the two sides' waves in that round; percentiles pool every wave.

1. Generation: our GenerationService.GenerateStream vs vLLM's gRPC server
   (`python -m vllm.entrypoints.launchers.grpc_server`: the smg-grpc-servicer `VllmEngine`
   service) streaming `Generate`. Both run at once on the same model dir with the same engine
   settings and environment (float32, max_model_len 2048, max_num_seqs, KV-cache size, seed 0,
   eager, stream_interval 1, vLLM's automatic core binding); only one is loaded in a wave. A wave
   starts C streams together (default 16 and 64), each with the same prompt token ids and exactly
   T greedy tokens (ignore_eos). Our service keeps its own threads off the engine's cores
   (`frontend_off_engine_cores`, its default; `--service-placement none` leaves them to the
   scheduler like vLLM's server, which runs as shipped). The load client runs unpinned, and pinned
   onto the cores vLLM's binding leaves free (`--client-placement`; pinned, it sits there for both
   sides), so the comparison holds wherever the client runs.

2. Gateway: chatstack's full stack (redis, tokenizer, session, generation, reward, gateway, as
   bench_gateway starts it, with max_num_seqs 64 so 32 clients are not queued) `ChatService.Chat`
   vs SMG `/v1/chat/completions` (stream=true, over HTTP) in front of its own vLLM gRPC worker
   with the generation service's engine settings and cores (SMG as `smg serve` sets itself up for
   one worker: passthrough policy, no router retries, no circuit breaker). Closed-loop clients
   (default 1, 8 and 32) send the same system prompt + user message; each Chat opens a new
   session (the system prompt in the request, as an OpenAI client sends it to SMG), so every
   prompt is identical and nothing runs untimed between requests. Greedy, max_tokens 64; SMG and
   the direct calls also get min_tokens 64, Chat has no such option, so the message is one whose
   greedy answer runs past 64 tokens (the tokens of every answer are checked and printed). In
   the same rounds each path's own backend is called directly (GenerateStream / vLLM Generate with
   the prompt ids our tokenizer renders for the messages): each gateway's added TTFT is its TTFT
   p50 minus its backend's. Every server process's CPU time (utime+stime, its children included,
   from /proc) is read around each wave. `--scoring` sets the gateway's
   CHATSTACK_GATEWAY_SINGLE_ANSWER_SCORING (sync: the reward model scores every single answer
   before the final message; async; off).

Before each wave the script waits until the servers are quiet (under 0.1 core over 0.2 s): after
its last step vLLM's CPU worker spins a core for about a second, and both engines of a comparison
are bound to the same core, so a wave would otherwise run beside the previous wave's spin (an
async reward score also ends there). Everything listens on 127.0.0.1; every wave is bounded (C
streams, or seconds / requests); every process is stopped at the end.

The peers are not chatstack dependencies: `make bench-peers` installs pinned versions of smg,
smg-grpc-servicer and smg-grpc-proto into the venv for the run (--no-deps: the servicer's [vllm]
extra would pull the CUDA vLLM) and removes them after.

Run: `make bench-peers` (options in BENCH_PEERS_ARGS), or with the peers installed
`python -m tests.benchmarks.bench_peers --models-dir .models/tiny`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from chatstack.catalog import GATEWAY, GENERATION
from chatstack.core.cpu_placement import allowed_cpus, engine_cpus, pin_process
from chatstack.core.process import (
    ManagedProcess,
    free_port,
    health_status,
    start_grpc_service,
    wait_until,
)
from chatstack.core.redis_process import RedisProcess
from chatstack.generation.config import GenerationConfig
from chatstack.local_stack import engine_placement, engine_placement_flags
from chatstack.v1 import (
    chat_pb2,
    chat_pb2_grpc,
    common_pb2,
    generation_pb2,
    generation_pb2_grpc,
    tokenizer_pb2,
    tokenizer_pb2_grpc,
)
from tests.benchmarks.measure import cpu_seconds, sse_events

API_KEY = "bench-secret-key"
SCORING_ENV = "CHATSTACK_GATEWAY_SINGLE_ANSWER_SCORING"
SYSTEM_PROMPT = "You are a helpful assistant."
MESSAGE = "Tell me a short story about a cat who sails to the sea."
CALL_TIMEOUT = 120.0  # seconds; no call of a bounded wave waits longer
#: Engine settings both sides get (our service as flags, vLLM's server as its own flags).
ENGINE_FIELDS = ("model", "dtype", "max_model_len", "max_num_seqs", "cpu_kvcache_space_gib", "seed",
                 "enforce_eager", "stream_interval", "cpu_threads_bind", "frontend_off_engine_cores")
PEERS_HINT = ("vLLM's gRPC server and SMG are not installed: `make bench-peers` installs the pinned "
              "versions for the run (BENCH_PEERS_ARGS='...' passes options)")


# -- measurements -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """One request as the client saw it."""

    ttft: float
    e2e: float
    tokens: int
    text: str = ""
    ids: tuple[int, ...] = ()
    prompt_tokens: int = 0
    reward_status: str = ""


Call = Callable[[], Awaitable[Outcome]]


@dataclass
class Wave:
    """The outcomes of one wave and its wall time."""

    seconds: float
    outcomes: list[Outcome]


@dataclass
class Stats:
    """Every wave of one path at one load, pooled; per-wave rates kept in round order."""

    ttfts: list[float] = field(default_factory=list)
    e2es: list[float] = field(default_factory=list)
    tokens: int = 0
    requests: int = 0
    seconds: float = 0.0
    wave_rates: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    token_counts: set[int] = field(default_factory=set)
    first: Outcome | None = None

    def add(self, wave: Wave, cpu: Mapping[str, float]) -> None:
        tokens = sum(o.tokens for o in wave.outcomes)
        self.ttfts += [o.ttft for o in wave.outcomes]
        self.e2es += [o.e2e for o in wave.outcomes]
        self.tokens += tokens
        self.requests += len(wave.outcomes)
        self.seconds += wave.seconds
        self.wave_rates.append(tokens / wave.seconds)
        self.token_counts |= {o.tokens for o in wave.outcomes}
        self.first = self.first or (wave.outcomes[0] if wave.outcomes else None)
        for name, seconds in cpu.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + seconds

    @property
    def rate(self) -> float:
        """Tokens per second over all waves."""
        return self.tokens / self.seconds if self.seconds else float("nan")

    def cpu_ms(self, name: str) -> float:
        """CPU milliseconds of process `name` per request."""
        return self.cpu.get(name, 0.0) * 1e3 / self.requests if self.requests else float("nan")


def make_prompt(n: int, vocab: int = 2048, seed: int = 7) -> list[int]:
    """n fixed pseudo-random ids clear of the special tokens at the bottom of the vocabulary
    (bench_generation's prompt)."""
    rng = random.Random(seed)
    return [rng.randrange(16, vocab) for _ in range(n)]


def pct(values: Sequence[float], q: float) -> float:
    """q-quantile in ms (nearest rank)."""
    if not values:
        return float("nan")
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1e3


def pair_ratio(a: Stats, b: Stats) -> float:
    """Median over rounds of a's wave rate / b's wave rate in the same round (adjacent waves)."""
    ratios = [x / y for x, y in zip(a.wave_rates, b.wave_rates, strict=False) if y > 0]
    return statistics.median(ratios) if ratios else float("nan")


def alternate(items: Sequence[str], round_index: int) -> list[str]:
    """`items` in order on even rounds, reversed on odd ones (A, B | B, A | ...)."""
    return list(items) if round_index % 2 == 0 else list(reversed(items))


class CpuMeter:
    """CPU seconds of named server processes (each with its children) across a wave."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self.settle_waits: list[float] = []

    def read(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    async def settle(self, quiet: float = 0.1, window: float = 0.2, limit: float = 5.0) -> None:
        """Wait until the servers together use under `quiet` of a core over `window` seconds (what
        the last wave left running, e.g. an engine worker that keeps polling or a background reward
        score, has ended), at most `limit` seconds."""
        start = time.perf_counter()
        before = sum(self.read().values())
        while time.perf_counter() - start < limit:
            await asyncio.sleep(window)
            after = sum(self.read().values())
            if after - before < quiet * window:
                break
            before = after
        self.settle_waits.append(time.perf_counter() - start)

    async def measure(self, wave: Awaitable[Wave]) -> tuple[Wave, dict[str, float]]:
        """Settle, then run `wave`; its result and each process's CPU seconds during it."""
        await self.settle()
        before = self.read()
        result = await wave
        after = self.read()
        return result, {name: after[name] - before[name] for name in after}


def root_pid(proc: ManagedProcess) -> int:
    assert proc.proc is not None
    return proc.proc.pid


# -- load shapes ------------------------------------------------------------------------------
async def burst(call: Call, streams: int) -> Wave:
    """`streams` requests started together; the wave lasts until the last ends."""
    start = time.perf_counter()
    outcomes = await asyncio.gather(*[call() for _ in range(streams)])
    return Wave(time.perf_counter() - start, list(outcomes))


async def closed_loop(call: Call, clients: int, seconds: float, requests: int) -> Wave:
    """`clients` loops, each sending its next request when its last one ended, until `requests`
    have been sent (if > 0) or `seconds` have passed; the wave lasts until the last one ends."""
    start = time.perf_counter()
    deadline, left = start + seconds, requests
    outcomes: list[Outcome] = []

    async def client() -> None:
        nonlocal left
        while (left > 0) if requests > 0 else (time.perf_counter() < deadline):
            left -= 1
            outcomes.append(await call())

    await asyncio.gather(*[client() for _ in range(clients)])
    return Wave(time.perf_counter() - start, outcomes)


# -- clients ----------------------------------------------------------------------------------
def ours_call(stub: generation_pb2_grpc.GenerationServiceStub,
              request: generation_pb2.GenerateStreamRequest) -> Call:
    """One GenerateStream, timed to its first token."""
    async def one() -> Outcome:
        start = time.perf_counter()
        ttft, text = 0.0, ""
        ids: list[int] = []
        async for message in stub.GenerateStream(request, timeout=CALL_TIMEOUT):
            if message.HasField("delta"):
                if message.delta.token_ids and not ids:
                    ttft = time.perf_counter() - start
                ids += message.delta.token_ids
            else:
                text = message.final.choices[0].text
        return Outcome(ttft, time.perf_counter() - start, len(ids), text, tuple(ids), len(request.token_ids.ids))
    return one


def vllm_proto() -> tuple[Any, Any]:
    """smg-grpc-proto's vLLM engine messages and stubs (installed for this benchmark only)."""
    try:
        from smg_grpc_proto.generated import vllm_engine_pb2, vllm_engine_pb2_grpc
    except ImportError as exc:
        raise SystemExit(PEERS_HINT) from exc
    return vllm_engine_pb2, vllm_engine_pb2_grpc


def vllm_call(channel: grpc.aio.Channel, prompt: Sequence[int], max_tokens: int, min_tokens: int,
              ignore_eos: bool) -> Call:
    """One streaming VllmEngine.Generate (greedy, one choice), timed to its first token."""
    pb, pb_grpc = vllm_proto()
    stub = pb_grpc.VllmEngineStub(channel)
    sampling = pb.SamplingParams(temperature=0.0, max_tokens=max_tokens, min_tokens=min_tokens,
                                 ignore_eos=ignore_eos, n=1)
    tokenized = pb.TokenizedInput(input_ids=list(prompt))
    numbers = itertools.count()

    async def one() -> Outcome:
        request = pb.GenerateRequest(request_id=f"bench-{os.getpid()}-{next(numbers)}", tokenized=tokenized,
                                     sampling_params=sampling, stream=True)
        start = time.perf_counter()
        ttft = 0.0
        ids: list[int] = []
        async for message in stub.Generate(request, timeout=CALL_TIMEOUT):
            if message.HasField("chunk") and message.chunk.token_ids:
                ttft = ttft or time.perf_counter() - start
                ids += message.chunk.token_ids
        return Outcome(ttft, time.perf_counter() - start, len(ids), "", tuple(ids), len(prompt))
    return one


def chat_call(stub: chat_pb2_grpc.ChatServiceStub, request: chat_pb2.ChatRequest) -> Call:
    """One Chat (a new session each time: `request` has no session id), timed to its first delta."""
    metadata = (("authorization", f"Bearer {API_KEY}"),)

    async def one() -> Outcome:
        start = time.perf_counter()
        ttft, final = 0.0, None
        async for message in stub.Chat(request, metadata=metadata, timeout=CALL_TIMEOUT):
            kind = message.WhichOneof("event")
            if kind == "delta":
                ttft = ttft or time.perf_counter() - start
            elif kind == "final":
                final = message.final
        if final is None:
            raise RuntimeError("Chat ended without a final message")
        return Outcome(ttft, time.perf_counter() - start, final.usage.completion_tokens, final.text,
                       prompt_tokens=final.usage.prompt_tokens,
                       reward_status=chat_pb2.RewardStatus.Name(final.reward_status))
    return one


def smg_call(session: Any, url: str, body: Mapping[str, Any]) -> Call:
    """One streamed /v1/chat/completions, timed to its first content; tokens from its usage."""
    async def one() -> Outcome:
        start = time.perf_counter()
        ttft = 0.0
        parts: list[str] = []
        usage: dict[str, Any] = {}
        async with session.post(url, json=body) as reply:
            if reply.status != 200:
                raise RuntimeError(f"SMG answered {reply.status}: {(await reply.text())[:300]}")
            async for event in sse_events(reply.content):
                for choice in event.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content") or ""
                    if text:
                        ttft = ttft or time.perf_counter() - start
                        parts.append(text)
                usage = event.get("usage") or usage
        return Outcome(ttft, time.perf_counter() - start, int(usage.get("completion_tokens", 0)),
                       "".join(parts), prompt_tokens=int(usage.get("prompt_tokens", 0)))
    return one


# -- starting the servers ---------------------------------------------------------------------
def engine_config(models: Path, args: argparse.Namespace, **placement: Any) -> GenerationConfig:
    """The engine settings both sides of a comparison get."""
    return GenerationConfig(model=str(models / "lm"), dtype="float32", max_model_len=2048,
                            max_num_seqs=args.max_num_seqs, cpu_kvcache_space_gib=args.cpu_kvcache_space_gib,
                            seed=0, enforce_eager=True, stream_interval=1, max_in_flight=256,
                            log_level="WARNING", **placement)


def engine_env(engine: GenerationConfig) -> dict[str, str]:
    """The engine environment of both sides (our service derives the first two from its flags too)."""
    return {"VLLM_CPU_KVCACHE_SPACE": f"{engine.cpu_kvcache_space_gib:g}",
            "VLLM_CPU_OMP_THREADS_BIND": engine.cpu_threads_bind,
            "VLLM_LOGGING_LEVEL": "WARNING"}


def start_generation(engine: GenerationConfig, log_dir: Path, timeout: float, name: str) -> tuple[ManagedProcess, str]:
    """Our generation service with `engine`'s settings."""
    port = free_port()
    proc = start_grpc_service(name, "generation", port, free_port(), log_dir,
                              engine.cli_args(*ENGINE_FIELDS, "max_in_flight", "log_level"),
                              env=engine_env(engine), health_service=GENERATION.proto_service,
                              timeout=timeout)
    return proc, f"127.0.0.1:{port}"


def start_peer(name: str, argv: Sequence[str], log_dir: Path, env: Mapping[str, str],
               ready: Callable[[], bool], timeout: float) -> ManagedProcess:
    """A peer server as a child process (stopped again if it does not get ready)."""
    proc = ManagedProcess(name, argv, log_dir / f"{name}.log", env=env)
    try:
        proc.start()
        wait_until(ready, timeout, f"{name} ready", alive=proc.alive, interval=0.2)
    except (TimeoutError, RuntimeError) as exc:
        proc.stop(10)
        raise RuntimeError(f"{exc}\n--- {proc.log_path} ---\n{proc.tail()}") from exc
    except BaseException:
        proc.stop(10)
        raise
    return proc


def start_vllm_grpc(engine: GenerationConfig, log_dir: Path, timeout: float, name: str) -> tuple[ManagedProcess, str]:
    """vLLM's gRPC server (smg-grpc-servicer) with `engine`'s settings, on 127.0.0.1; its KV-event
    publisher (on by default, listening on every interface) off."""
    vllm_proto()  # fail early, with the hint, if the peers are missing
    port = free_port()
    argv = [sys.executable, "-m", "vllm.entrypoints.launchers.grpc_server", "--host", "127.0.0.1",
            "--port", str(port), "--model", engine.model, "--dtype", engine.dtype,
            "--max-model-len", str(engine.max_model_len), "--max-num-seqs", str(engine.max_num_seqs),
            "--seed", str(engine.seed), "--enforce-eager" if engine.enforce_eager else "--no-enforce-eager",
            "--stream-interval", str(engine.stream_interval)]
    address = f"127.0.0.1:{port}"
    proc = start_peer(name, argv, log_dir, {**engine_env(engine), "SMG_VLLM_SERVICER_KV_EVENTS": "0"},
                      lambda: health_status(address) == health_pb2.HealthCheckResponse.SERVING, timeout)
    return proc, address


def _smg_ready(base: str) -> bool:
    """SMG answers and has registered its (one) worker as healthy."""
    try:
        with urllib.request.urlopen(f"{base}/readiness", timeout=1) as reply:
            return bool(json.loads(reply.read()).get("healthy_workers", 0) >= 1)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_smg(model: str, worker: str, log_dir: Path, timeout: float) -> tuple[ManagedProcess, str]:
    """SMG's router on 127.0.0.1 in front of one vLLM gRPC worker, tokenizing with the model's own
    tokenizer; set up as `smg serve` does for one worker (passthrough policy, no router retries,
    no circuit breaker)."""
    port = free_port()
    argv = [sys.executable, "-m", "smg", "launch", "--host", "127.0.0.1", "--port", str(port),
            "--worker-urls", f"grpc://{worker}", "--model-path", model, "--policy", "passthrough",
            "--disable-retries", "--disable-circuit-breaker", "--prometheus-host", "127.0.0.1",
            "--prometheus-port", str(free_port()), "--log-level", "warn", "--shutdown-grace-period-secs", "5"]
    base = f"http://127.0.0.1:{port}"
    return start_peer("smg-bench", argv, log_dir, {}, lambda: _smg_ready(base), timeout), base


def stop_all(procs: Sequence[ManagedProcess]) -> None:
    """Stop in reverse start order; one that fails to stop does not keep the others running."""
    for proc in reversed(procs):
        try:
            proc.stop(60)
        except Exception as exc:  # the rest still have to go
            print(f"could not stop {proc.name}: {exc!r}", flush=True)


# -- client placement -------------------------------------------------------------------------
@contextmanager
def client_on(cpus: set[int] | None) -> Iterator[None]:
    """This process (the load client) on `cpus` for the block, if given."""
    if not cpus:
        yield
        return
    before = allowed_cpus()
    pin_process(os.getpid(), cpus)
    try:
        yield
    finally:
        pin_process(os.getpid(), before)


# -- 1. generation ----------------------------------------------------------------------------
GEN_SIDES = ("ours", "vllm")
GEN_NAMES = {"ours": "GenerationService", "vllm": "vLLM gRPC"}


@dataclass
class GenerationRun:
    """Results by (client placement, streams, side) and the placement facts."""

    stats: dict[tuple[str, int, str], Stats]
    client_cpus: dict[str, set[int] | None]
    engine_cores: dict[str, set[int]]
    idle_cpu: dict[str, float]  # CPU ms/s a side's servers used while the other side was loaded
    settle_waits: list[float]  # seconds waited before each wave for the servers to go quiet


async def generation_rounds(addresses: Mapping[str, str], pids: Mapping[str, int], prompt: list[int],
                            args: argparse.Namespace, levels: list[int]) -> GenerationRun:
    """Alternating bursts: per round, per client placement, per C, our service and vLLM's server."""
    ours_request = generation_pb2.GenerateStreamRequest(
        token_ids=common_pb2.TokenIds(ids=prompt),
        sampling=generation_pb2.SamplingParams(n=1, max_tokens=args.gen_tokens, temperature=0.0, ignore_eos=True))
    meter = CpuMeter(pids)
    async with grpc.aio.insecure_channel(addresses["ours"]) as ours_channel, \
            grpc.aio.insecure_channel(addresses["vllm"]) as vllm_channel:
        calls = {"ours": ours_call(generation_pb2_grpc.GenerationServiceStub(ours_channel), ours_request),
                 "vllm": vllm_call(vllm_channel, prompt, args.gen_tokens, 0, ignore_eos=True)}
        for side in GEN_SIDES:  # warm-up, untimed
            await burst(calls[side], max(levels))
        # The core(s) vLLM's binding leaves to everything else: where our service's threads run
        # by default, and where a pinned client competes with the servers' frontends.
        free_cpus = (allowed_cpus() - engine_cpus(pids["ours"])) or set(os.sched_getaffinity(pids["ours"]))
        placements = {"unpinned": None, "pinned": free_cpus}
        chosen = list(placements) if args.client_placement == "both" else [args.client_placement]
        stats = {(p, c, s): Stats() for p in chosen for c in levels for s in GEN_SIDES}
        idle = {s: [0.0, 0.0] for s in GEN_SIDES}  # CPU seconds, wall seconds
        for r in range(args.rounds):
            print(f"  generation round {r + 1}/{args.rounds}", flush=True)
            for placement in alternate(chosen, r):
                for c in levels:
                    for side in alternate(GEN_SIDES, r):
                        with client_on(placements[placement]):
                            wave, cpu = await meter.measure(burst(calls[side], c))
                        stats[(placement, c, side)].add(wave, {side: cpu[side]})
                        other = "vllm" if side == "ours" else "ours"
                        idle[other][0] += cpu[other]
                        idle[other][1] += wave.seconds
    return GenerationRun(stats, {p: placements[p] for p in chosen},
                         {s: engine_cpus(pid) for s, pid in pids.items()},
                         {s: 1e3 * cpu / wall if wall else float("nan") for s, (cpu, wall) in idle.items()},
                         meter.settle_waits)


def run_generation(models: Path, args: argparse.Namespace, log_dir: Path) -> GenerationRun:
    # vLLM's automatic binding; our frontend off its cores unless --service-placement none
    engine = engine_config(models, args, frontend_off_engine_cores=args.service_placement == "off-engine")
    procs: list[ManagedProcess] = []
    try:
        print("starting our generation service ...", flush=True)
        ours, ours_address = start_generation(engine, log_dir, args.startup_timeout, "generation-peers")
        procs.append(ours)
        print("starting vLLM's gRPC server ...", flush=True)
        vllm, vllm_address = start_vllm_grpc(engine, log_dir, args.startup_timeout, "vllm-grpc-gen")
        procs.append(vllm)
        levels = [int(c) for c in args.gen_concurrency.split(",") if c.strip()]
        return asyncio.run(generation_rounds({"ours": ours_address, "vllm": vllm_address},
                                             {"ours": root_pid(ours), "vllm": root_pid(vllm)},
                                             make_prompt(args.prompt_tokens), args, levels))
    finally:
        stop_all(procs)


def settled(waits: list[float]) -> str:
    """How long the servers took to go quiet before the waves."""
    if not waits:
        return "no waves"
    return (f"waits for quiet servers before a wave: median {statistics.median(waits) * 1e3:.0f} ms, "
            f"max {max(waits) * 1e3:.0f} ms")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report_generation(run: GenerationRun, args: argparse.Namespace) -> list[str]:
    """Print the generation tables; returns the aim lines."""
    levels = sorted({c for _, c, _ in run.stats})
    same = len({s.first.ids for s in run.stats.values() if s.first}) == 1
    counts = sorted(set().union(*(s.token_counts for s in run.stats.values())))
    print(f"\n## 1. Generation: GenerateStream vs vLLM gRPC Generate ({args.rounds} rounds of alternating "
          f"bursts, C streams x {args.gen_tokens} tokens, ignore_eos, greedy, prompt {args.prompt_tokens} ids)")
    print(f"engine cores: ours {sorted(run.engine_cores['ours'])}, vLLM {sorted(run.engine_cores['vllm'])}; "
          "client CPUs: " + ", ".join(f"{p} {sorted(c) if c else sorted(allowed_cpus())}"
                                       for p, c in run.client_cpus.items()))
    print(f"tokens per stream {counts}; identical first answer on every side and placement: {same}; "
          f"idle side's servers while the other was loaded: ours {run.idle_cpu['ours']:.0f}, "
          f"vLLM {run.idle_cpu['vllm']:.0f} CPU ms/s; {settled(run.settle_waits)}\n")
    print("| client | C | server | TTFT p50 ms | TTFT p95 ms | e2e p50 ms | tokens/s | server CPU ms/stream |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for placement in run.client_cpus:
        for c in levels:
            for side in GEN_SIDES:
                s = run.stats[(placement, c, side)]
                print(f"| {placement} | {c} | {GEN_NAMES[side]} | {pct(s.ttfts, 0.5):.1f} | {pct(s.ttfts, 0.95):.1f} "
                      f"| {pct(s.e2es, 0.5):.1f} | {s.rate:.0f} | {s.cpu_ms(side):.1f} |")
    print("\n| client | C | tokens/s ours ÷ vLLM (median of rounds) | TTFT p50 ours ÷ vLLM | TTFT p95 ours ÷ vLLM |")
    print("|---|---:|---:|---:|---:|")
    aims = []
    for placement in run.client_cpus:
        for c in levels:
            ours, vllm = run.stats[(placement, c, "ours")], run.stats[(placement, c, "vllm")]
            rate = pair_ratio(ours, vllm)
            p50 = pct(ours.ttfts, 0.5) / pct(vllm.ttfts, 0.5)
            p95 = pct(ours.ttfts, 0.95) / pct(vllm.ttfts, 0.95)
            print(f"| {placement} | {c} | {rate:.3f} | {p50:.3f} | {p95:.3f} |")
            aims.append(f"generation C={c}, client {placement}: throughput ours/vLLM {rate:.3f} "
                        f"(aim >= 1.0) {verdict(rate >= 1.0)}; TTFT p95 ours/vLLM {p95:.3f} "
                        f"(aim <= 1.1) {verdict(p95 <= 1.1)}")
    return aims


# -- 2. gateway -------------------------------------------------------------------------------
PATHS = ("chat", "smg", "ours", "vllm")
PATH_NAMES = {"chat": "chatstack Chat", "smg": "SMG chat/completions",
              "ours": "GenerationService direct", "vllm": "vLLM gRPC direct"}
#: The server processes whose CPU each path's waves are charged with.
PATH_PROCESSES = {"chat": ("gateway", "tokenizer", "session", "generation", "reward", "redis"),
                  "smg": ("smg", "vllm"), "ours": ("generation",), "vllm": ("vllm",)}
STACK_SERVICES = ("tokenizer", "session", "generation", "reward", "gateway")


@dataclass
class GatewayRun:
    """Results by (clients, path), and what was checked about the prompts."""

    stats: dict[tuple[int, str], Stats]
    prompt_tokens: int
    checks: list[str]
    settle_waits: list[float]


def stack_specs(models: Path, engine: GenerationConfig, redis_url: str) -> list[tuple[str, tuple[str, ...], dict[str, str]]]:
    """(service, flags, env) of the stack's backends, as bench_gateway starts them."""
    reward = ("--model", str(models / "reward"), "--dtype", "float32", "--max-model-len", "512",
              "--cpu-kvcache-space-gib", "1", *engine_placement_flags(1), "--log-level", "WARNING")
    return [("tokenizer", ("--model-dir", str(models / "lm"), "--log-level", "WARNING"), {}),
            ("session", ("--redis-url", redis_url, "--log-level", "WARNING"), {}),
            ("generation", engine.cli_args(*ENGINE_FIELDS, "max_in_flight", "log_level"), engine_env(engine)),
            ("reward", reward, {"VLLM_LOGGING_LEVEL": "WARNING"})]


def start_stack(models: Path, engine: GenerationConfig, redis_url: str, scoring: str, log_dir: Path,
                timeout: float, procs: list[ManagedProcess], http_port: int = 0) -> dict[str, str]:
    """The five chatstack services (appended to `procs` as they start); returns their addresses.
    `http_port`: the gateway's OpenAI API (0: off)."""
    from chatstack.gateway.auth import hash_key

    addresses: dict[str, str] = {}
    for name, flags, env in stack_specs(models, engine, redis_url):
        port = free_port()
        print(f"starting {name} ...", flush=True)
        procs.append(start_grpc_service(f"{name}-peers", name, port, free_port(), log_dir, flags, env=env,
                                        health_service=f"chatstack.v1.{name.capitalize()}Service",
                                        timeout=timeout))
        addresses[name] = f"127.0.0.1:{port}"
    port = free_port()
    gateway_flags = ["--api-keys", f"bench:{hash_key(API_KEY)}", "--log-level", "WARNING",
                     "--http-port", str(http_port)]
    for name, address in addresses.items():
        gateway_flags += [f"--{name}-address", address]
    print(f"starting gateway (single-answer scoring {scoring}) ...", flush=True)
    procs.append(start_grpc_service("gateway-peers", "gateway", port, free_port(), log_dir, gateway_flags,
                                    env={SCORING_ENV: scoring}, health_service=GATEWAY.proto_service,
                                    timeout=timeout))
    addresses["gateway"] = f"127.0.0.1:{port}"
    return addresses


async def rendered_prompt(tokenizer_address: str) -> tokenizer_pb2.ApplyChatTemplateResponse:
    """The prompt our tokenizer renders for the system prompt + user message."""
    async with grpc.aio.insecure_channel(tokenizer_address) as channel:
        return await tokenizer_pb2_grpc.TokenizerServiceStub(channel).ApplyChatTemplate(
            tokenizer_pb2.ApplyChatTemplateRequest(messages=[
                common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content=SYSTEM_PROMPT),
                common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=MESSAGE)],
                add_generation_prompt=True), timeout=CALL_TIMEOUT)


async def chat_prompt_matches(stub: chat_pb2_grpc.ChatServiceStub, request: chat_pb2.ChatRequest,
                              rendered: tokenizer_pb2.ApplyChatTemplateResponse) -> bool:
    """One untimed Chat with echo_prompt: does the gateway render exactly `rendered`?"""
    echo = chat_pb2.ChatRequest()
    echo.CopyFrom(request)
    echo.options.echo_prompt = True
    same = False
    async for message in stub.Chat(echo, metadata=(("authorization", f"Bearer {API_KEY}"),), timeout=CALL_TIMEOUT):
        if message.WhichOneof("event") == "session":
            s = message.session
            same = s.prompt == rendered.prompt and s.prompt_tokens == len(rendered.token_ids)
    return same


async def gateway_rounds(addresses: Mapping[str, str], smg_base: str, model: str, meter: CpuMeter,
                         args: argparse.Namespace, levels: list[int]) -> GatewayRun:
    """Alternating closed-loop waves: per round, per client count, Chat, SMG and both backends."""
    import aiohttp

    rendered = await rendered_prompt(addresses["tokenizer"])
    prompt, tokens = list(rendered.token_ids), args.max_tokens
    chat_request = chat_pb2.ChatRequest(system_prompt=SYSTEM_PROMPT, message=MESSAGE,
                                        options=chat_pb2.ChatOptions(max_tokens=tokens, temperature=0.0))
    direct_request = generation_pb2.GenerateStreamRequest(
        token_ids=common_pb2.TokenIds(ids=prompt),
        sampling=generation_pb2.SamplingParams(n=1, max_tokens=tokens, min_tokens=tokens, temperature=0.0))
    body = {"model": model, "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                                         {"role": "user", "content": MESSAGE}],
            "max_tokens": tokens, "min_tokens": tokens, "temperature": 0.0, "stream": True,
            "stream_options": {"include_usage": True}}
    connector = aiohttp.TCPConnector(limit=0)
    async with grpc.aio.insecure_channel(addresses["gateway"]) as gateway_channel, \
            grpc.aio.insecure_channel(addresses["generation"]) as generation_channel, \
            grpc.aio.insecure_channel(addresses["vllm"]) as vllm_channel, \
            aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT)) as http:
        chat_stub = chat_pb2_grpc.ChatServiceStub(gateway_channel)
        calls = {"chat": chat_call(chat_stub, chat_request),
                 "smg": smg_call(http, f"{smg_base}/v1/chat/completions", body),
                 "ours": ours_call(generation_pb2_grpc.GenerationServiceStub(generation_channel), direct_request),
                 "vllm": vllm_call(vllm_channel, prompt, tokens, tokens, ignore_eos=False)}
        checks = [f"gateway renders the same prompt as the tokenizer: "
                  f"{await chat_prompt_matches(chat_stub, chat_request, rendered)}",
                  f"engine cores: generation {sorted(engine_cpus(meter.pids['generation']))}, "
                  f"SMG's vLLM {sorted(engine_cpus(meter.pids['vllm']))}, "
                  f"reward {sorted(engine_cpus(meter.pids['reward']))}"]
        for path in PATHS:  # warm-up, untimed
            await closed_loop(calls[path], max(levels), 0.0, max(levels))
        stats = {(c, p): Stats() for c in levels for p in PATHS}
        for r in range(args.rounds):
            print(f"  gateway round {r + 1}/{args.rounds}", flush=True)
            for c in levels:
                for path in alternate(PATHS, r):
                    wave, cpu = await meter.measure(closed_loop(calls[path], c, args.seconds, args.requests))
                    stats[(c, path)].add(wave, {n: cpu[n] for n in PATH_PROCESSES[path]})
    return GatewayRun(stats, len(prompt), checks, meter.settle_waits)


def run_gateway(models: Path, args: argparse.Namespace, log_dir: Path) -> GatewayRun:
    # The stack's placement (bench_gateway, `make run`): generation's engine on the first half of the
    # cores, reward's on the other; SMG's vLLM worker gets exactly the generation service's settings.
    engine = engine_config(models, args, **engine_placement(0))
    redis = RedisProcess(free_port(), log_dir / "redis")
    procs: list[ManagedProcess] = []
    try:
        print("starting redis-server ...", flush=True)
        redis.start()
        addresses = start_stack(models, engine, redis.url, args.scoring, log_dir, args.startup_timeout, procs)
        print("starting vLLM's gRPC server (SMG's worker) ...", flush=True)
        vllm, addresses["vllm"] = start_vllm_grpc(engine, log_dir, args.startup_timeout, "vllm-grpc-smg")
        procs.append(vllm)
        print("starting SMG ...", flush=True)
        smg, smg_base = start_smg(engine.model, addresses["vllm"], log_dir, args.startup_timeout)
        procs.append(smg)
        pids = {name: root_pid(proc) for name, proc in zip(STACK_SERVICES, procs, strict=False)}
        assert redis.proc is not None
        pids |= {"redis": root_pid(redis.proc), "vllm": root_pid(vllm), "smg": root_pid(smg)}
        levels = [int(c) for c in args.gw_concurrency.split(",") if c.strip()]
        return asyncio.run(gateway_rounds(addresses, smg_base, engine.model, CpuMeter(pids), args, levels))
    finally:
        stop_all(procs)
        redis.stop()


def report_gateway(run: GatewayRun, args: argparse.Namespace) -> list[str]:
    """Print the gateway tables; returns the aim lines."""
    levels = sorted({c for c, _ in run.stats})
    first = {p: run.stats[(levels[0], p)].first for p in PATHS}
    counts = {p: sorted(set().union(*(run.stats[(c, p)].token_counts for c in levels))) for p in PATHS}
    smg_prompt = first["smg"].prompt_tokens if first["smg"] else 0
    texts = {p: o.text for p, o in first.items() if o is not None and o.text}
    ids = {o.ids for p, o in first.items() if o is not None and o.ids}
    print(f"\n## 2. Gateway: chatstack Chat vs SMG /v1/chat/completions ({args.rounds} rounds of alternating "
          f"closed-loop waves of {f'{args.requests} requests' if args.requests else f'{args.seconds:g} s'}, "
          f"max_tokens {args.max_tokens}, greedy)")
    status = first["chat"].reward_status if first["chat"] else "?"
    print(f"single-answer scoring: {args.scoring} (Chat's reward_status: {status}); prompt {run.prompt_tokens} ids (ours), SMG's usage says "
          f"{smg_prompt}; {'; '.join(run.checks)}")
    print("completion tokens per request: " + ", ".join(f"{p} {counts[p]}" for p in PATHS))
    print(f"identical first answers: texts {len(set(texts.values())) == 1} ({', '.join(texts)}), "
          f"token ids {len(ids) == 1} (direct paths); {settled(run.settle_waits)}\n")
    print("| clients | path | TTFT p50 ms | TTFT p95 ms | e2e p50 ms | tokens/s | requests |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for c in levels:
        for p in PATHS:
            s = run.stats[(c, p)]
            print(f"| {c} | {PATH_NAMES[p]} | {pct(s.ttfts, 0.5):.1f} | {pct(s.ttfts, 0.95):.1f} "
                  f"| {pct(s.e2es, 0.5):.1f} | {s.rate:.0f} | {s.requests} |")
    print("\n| clients | chatstack Chat TTFT p50 / added over its backend | SMG TTFT p50 / added | Chat tokens/s ÷ SMG's |")
    print("|---:|---|---|---:|")
    aims = []
    for c in levels:
        chat, smg, ours, vllm = (run.stats[(c, p)] for p in PATHS)
        chat_added = pct(chat.ttfts, 0.5) - pct(ours.ttfts, 0.5)
        smg_added = pct(smg.ttfts, 0.5) - pct(vllm.ttfts, 0.5)
        rate = pair_ratio(chat, smg)
        print(f"| {c} | {pct(chat.ttfts, 0.5):.1f} ms / {chat_added:+.1f} ms | {pct(smg.ttfts, 0.5):.1f} ms / "
              f"{smg_added:+.1f} ms | {rate:.3f} |")
        if c == 1:
            aims.append(f"gateway C=1: Chat added TTFT {chat_added:+.2f} ms vs SMG's {smg_added:+.2f} ms "
                        f"(aim <= SMG's + 1 ms) {verdict(chat_added <= smg_added + 1.0)}")
        else:
            aims.append(f"gateway C={c}: Chat added TTFT {chat_added:+.2f} ms vs SMG's {smg_added:+.2f} ms "
                        f"(aim <= 1.5 x SMG's) {verdict(chat_added <= 1.5 * smg_added)}")
        aims.append(f"gateway C={c}: Chat tokens/s ÷ SMG's {rate:.3f} (aim >= 0.9) {verdict(rate >= 0.9)}")
    report_cpu(run, levels)
    return aims


def report_cpu(run: GatewayRun, levels: list[int]) -> None:
    """Server CPU ms per request, per process, per path."""
    print("\nserver CPU ms per request (process and its children, from /proc):\n")
    print("| path | process | " + " | ".join(f"C={c}" for c in levels) + " |")
    print("|---|---|" + "---:|" * len(levels))
    for path in PATHS:
        names = PATH_PROCESSES[path]
        for name in (*names, "total") if len(names) > 1 else names:
            values = [sum(run.stats[(c, path)].cpu_ms(n) for n in names) if name == "total"
                      else run.stats[(c, path)].cpu_ms(name) for c in levels]
            print(f"| {PATH_NAMES[path]} | {name} | " + " | ".join(f"{v:.1f}" for v in values) + " |")


# -- main -------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", default=".models/tiny")
    parser.add_argument("--only", choices=("generation", "gateway"), help="run one comparison (default both)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of each comparison")
    parser.add_argument("--gen-concurrency", default="16,64", help="comma-separated stream counts (1.)")
    parser.add_argument("--gen-tokens", type=int, default=128, help="tokens per stream (1.)")
    parser.add_argument("--prompt-tokens", type=int, default=32, help="prompt token ids per stream (1.)")
    parser.add_argument("--client-placement", choices=("unpinned", "pinned", "both"), default="both",
                        help="load client free, or pinned onto the cores vLLM leaves free, where our service runs by default (1.)")
    parser.add_argument("--service-placement", choices=("off-engine", "none"), default="off-engine",
                        help="our generation service's threads kept off the engine's cores (its default) "
                        "or left to the scheduler like vLLM's server (1.)")
    parser.add_argument("--gw-concurrency", default="1,8,32", help="comma-separated client counts (2.)")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per answer (2.)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of a closed-loop wave (2.)")
    parser.add_argument("--requests", type=int, default=0,
                        help="requests per closed-loop wave instead of --seconds, if > 0 (2.)")
    parser.add_argument("--scoring", choices=("sync", "async", "off"), default="sync",
                        help=f"the gateway's single-answer scoring ({SCORING_ENV}) (2.)")
    parser.add_argument("--max-num-seqs", type=int, default=64, help="engine batch size, both sides")
    parser.add_argument("--cpu-kvcache-space-gib", type=float, default=1.0, help="engine KV cache, both sides")
    parser.add_argument("--startup-timeout", type=float, default=300.0, help="seconds to wait for a server")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    vllm_proto()  # the peers are installed, or a hint and exit before anything starts
    models = Path(args.models_dir).resolve()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    print(f"logs in {log_dir}; {len(allowed_cpus())} CPUs; engines float32, max_num_seqs {args.max_num_seqs}, "
          f"KV cache {args.cpu_kvcache_space_gib:g} GiB; gateway single-answer scoring {args.scoring}", flush=True)
    started = time.monotonic()
    aims: list[str] = []
    gen = run_generation(models, args, log_dir) if args.only in (None, "generation") else None
    gateway = run_gateway(models, args, log_dir) if args.only in (None, "gateway") else None
    if gen is not None:
        aims += report_generation(gen, args)
    if gateway is not None:
        aims += report_gateway(gateway, args)
    print(f"\naims ({time.monotonic() - started:.0f} s in all):")
    for line in aims:
        print(f"  {line}")


if __name__ == "__main__":
    main()
