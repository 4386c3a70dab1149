"""Structured output over the OpenAI API: chatstack's gateway vs vLLM's own OpenAI server, the
same JSON schema, the same prompt, the same engine settings, in alternating waves (this 2-core
machine drifts 10-20 % between runs); and, to tell the gateway's share from the engine's, the
same constrained request straight to chatstack's generation service (gRPC GenerateStream with
the prompt ids the tokenizer service renders for the messages).

chatstack: the full stack (redis, tokenizer, session, generation, reward, gateway, as
bench_peers starts it), called at `POST /v1/chat/completions` (stateless: the gateway renders
the messages with the tokenizer service and streams from the generation service; nothing is
scored or stored). vLLM: `python -m vllm.entrypoints.openai.api_server` on the same model dir
with the generation service's engine settings (float32, max_model_len 2048, max_num_seqs, KV
cache, seed, eager, stream_interval 1) and the same structured-output backend settings
(xgrammar, no free whitespace). Both are asked for `response_format: json_schema` with a schema
whose instances are longer than T tokens (200 integers), streamed with usage, temperature 1,
T = max_tokens: every stream runs exactly T tokens (checked). A wave starts C streams together
(1, 8, 32); per round the two sides run back to back, their order alternating. Reported per
side: median over rounds of the aggregate tokens/s and of the p50 time to first content; and
the ratios to vLLM of each round's waves (median).

Run: `python -m tests.benchmarks.bench_structured_http --models-dir .models/tiny` (in `make bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from chatstack.core.process import ManagedProcess, free_port, wait_until
from chatstack.core.redis_process import RedisProcess
from chatstack.local_stack import engine_placement
from chatstack.v1 import common_pb2, generation_pb2_grpc, tokenizer_pb2, tokenizer_pb2_grpc
from tests.benchmarks.bench_peers import API_KEY, engine_config, engine_env, start_peer, start_stack, stop_all
from tests.benchmarks.bench_structured import SCHEMA, request, wave_arguments
from tests.benchmarks.bench_structured import one_stream as generation_stream
from tests.benchmarks.measure import sse_events

MESSAGES = [{"role": "user", "content": "List two hundred numbers."}]
FORMAT = {"type": "json_schema", "json_schema": {"name": "numbers", "schema": SCHEMA, "strict": True}}


@dataclass(frozen=True)
class Side:
    """One server: an OpenAI one (base URL, headers, served model name), or the generation
    service (`base` its gRPC address, `prompt` the rendered ids)."""

    name: str
    base: str
    headers: dict[str, str]
    model: str = ""
    prompt: tuple[int, ...] = ()


@dataclass(frozen=True)
class Wave:
    """One wave's aggregate tokens/s and p50 time to first content."""

    tokens_per_second: float
    ttft_p50: float


def _get(url: str, headers: dict[str, str]) -> Any:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as reply:
        return json.loads(reply.read())


def _ready(url: str, headers: dict[str, str]) -> bool:
    try:
        return bool(_get(url, headers).get("data"))
    except (urllib.error.URLError, OSError, ValueError):
        return False


async def one_stream(session: Any, side: Side, tokens: int, seed: int) -> tuple[float, int]:
    body = {"model": side.model, "messages": MESSAGES, "max_tokens": tokens, "temperature": 1.0, "seed": seed,
            "stream": True, "stream_options": {"include_usage": True}, "response_format": FORMAT}
    started, first, used = time.perf_counter(), 0.0, 0
    async with session.post(f"{side.base}/v1/chat/completions", json=body, headers=side.headers) as reply:
        assert reply.status == 200, await reply.text()
        async for event in sse_events(reply.content):
            if not first and any(c["delta"].get("content") for c in event.get("choices", [])):
                first = time.perf_counter() - started
            if event.get("usage"):
                used = event["usage"]["completion_tokens"]
    return first, used


async def one_grpc_stream(channel: grpc.aio.Channel, side: Side, tokens: int, seed: int) -> tuple[float, int]:
    stub = generation_pb2_grpc.GenerationServiceStub(channel)
    return await generation_stream(stub, request(tokens, True, seed, list(side.prompt)))


async def wave(session: Any, channel: grpc.aio.Channel, side: Side, concurrency: int, tokens: int,
               round_: int) -> Wave:
    started = time.perf_counter()
    results = await asyncio.gather(*(
        one_grpc_stream(channel, side, tokens, round_ * 1000 + i) if side.prompt
        else one_stream(session, side, tokens, round_ * 1000 + i) for i in range(concurrency)))
    wall = time.perf_counter() - started
    assert all(t == tokens for _, t in results), (side.name, [t for _, t in results])
    return Wave(sum(t for _, t in results) / wall, statistics.median(f for f, _ in results))


async def run(sides: list[Side], args: argparse.Namespace) -> None:
    """Alternating waves of every side per concurrency; ratios to the last side (vLLM)."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=600)
    direct = next(side for side in sides if side.prompt)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session, \
            grpc.aio.insecure_channel(direct.base) as channel:
        for side in sides:  # warm-up: compile the grammar once, as each server's cache would
            await wave(session, channel, side, 2, args.tokens, 99)
        baseline = sides[-1]
        print(f"{'streams':>7} " + " ".join(f"{s.name + ' tok/s':>18} {'ratio':>5} {'TTFT':>8} {'ratio':>5}"
                                          for s in sides))
        for concurrency in args.concurrency:
            waves: dict[str, list[Wave]] = {side.name: [] for side in sides}
            for r in range(args.rounds):
                for side in (sides if r % 2 == 0 else sides[::-1]):
                    waves[side.name].append(await wave(session, channel, side, concurrency, args.tokens, r))
            cells = []
            for side in sides:
                pairs = list(zip(waves[side.name], waves[baseline.name], strict=True))
                tps = statistics.median(a.tokens_per_second / b.tokens_per_second for a, b in pairs)
                ttft = statistics.median(a.ttft_p50 / b.ttft_p50 for a, b in pairs)
                cells.append(f"{statistics.median(w.tokens_per_second for w in waves[side.name]):>18.0f} "
                             f"{tps:>5.2f} {statistics.median(w.ttft_p50 for w in waves[side.name]) * 1000:>6.1f}ms "
                             f"{ttft:>5.2f}")
            print(f"{concurrency:>7} " + " ".join(cells), flush=True)


async def rendered_ids(tokenizer: str) -> list[int]:
    """The prompt ids the tokenizer service renders for MESSAGES (what the gateway sends)."""
    async with grpc.aio.insecure_channel(tokenizer) as channel:
        reply = await tokenizer_pb2_grpc.TokenizerServiceStub(channel).ApplyChatTemplate(
            tokenizer_pb2.ApplyChatTemplateRequest(messages=[common_pb2.ChatMessage(
                role=common_pb2.ROLE_USER, content=MESSAGES[0]["content"])], add_generation_prompt=True),
            timeout=60)
    return list(reply.token_ids)


def start_vllm_openai(args: argparse.Namespace, engine: Any, log_dir: Path) -> tuple[ManagedProcess, Side]:
    """vLLM's OpenAI server with the generation service's engine and structured-output settings."""
    port = free_port()
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1",
            "--port", str(port), "--model", engine.model, "--dtype", engine.dtype,
            "--max-model-len", str(engine.max_model_len), "--max-num-seqs", str(engine.max_num_seqs),
            "--seed", str(engine.seed), "--enforce-eager", "--stream-interval", str(engine.stream_interval),
            "--structured-outputs-config", json.dumps({"backend": "xgrammar", "disable_any_whitespace": True}),
            "--disable-uvicorn-access-log"]
    base = f"http://127.0.0.1:{port}"
    proc = start_peer("vllm-openai", argv, log_dir, engine_env(engine),
                      lambda: _ready(f"{base}/v1/models", {}), args.startup_timeout)
    return proc, Side("vLLM", base, {})


def main() -> None:
    parser = wave_arguments(__doc__ or "")
    parser.add_argument("--max-num-seqs", type=int, default=64)
    parser.add_argument("--cpu-kvcache-space-gib", type=float, default=1.0)
    parser.add_argument("--startup-timeout", type=float, default=300.0)
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
            ours = Side("chatstack", f"http://127.0.0.1:{http_port}", {"authorization": f"Bearer {API_KEY}"})
            print("starting vLLM's OpenAI server ...", flush=True)
            vllm, theirs = start_vllm_openai(args, engine, log_dir)
            procs.append(vllm)
            sides = []
            for side in (ours, theirs):
                wait_until(lambda s=side: _ready(f"{s.base}/v1/models", s.headers), args.startup_timeout,  # type: ignore[misc]
                           f"{side.name} serving /v1/models")
                sides.append(Side(side.name, side.base, side.headers,
                                  _get(f"{side.base}/v1/models", side.headers)["data"][0]["id"]))
            rendered = asyncio.run(rendered_ids(addresses["tokenizer"]))
            sides.insert(1, Side("generation", addresses["generation"], {}, prompt=tuple(rendered)))
            asyncio.run(run(sides, args))
        finally:
            stop_all(procs)
            redis.stop()


if __name__ == "__main__":
    main()
