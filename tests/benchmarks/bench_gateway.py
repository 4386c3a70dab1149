"""Gateway overhead: Chat through the gateway, and the gateway's OpenAI-compatible HTTP API, vs
GenerationService.GenerateStream called directly.

Starts redis, the tokenizer, session, generation, reward and gateway services (the gateway's HTTP
API on a free port). N sequential requests each way, interleaved (the order of the three paths
rotates every request, so drift hits all alike), with the same prompt and sampling parameters:

  direct : GenerateStream with the prompt token ids the gateway sends (ApplyChatTemplate of the
           same messages from the tokenizer service) and the gateway's SamplingParams
           (n=1, max_tokens, min_tokens=1, temperature 0);
  gateway: Chat in one session that holds no turns before each call (the exchange is undone,
           untimed, after each call), so every prompt is identical; echo_prompt checks it.
  http   : POST /v1/chat/completions, `stream: true` (server-sent events read line by line with
           aiohttp, one persistent keep-alive connection like the gRPC channel), the same single
           user message, max_tokens and temperature 0; stateless: the gateway renders the messages
           with the tokenizer service and streams generation, nothing is read or stored.
           stream_options.include_usage checks the prompt's token count.

The gateway path also counts tokens, reads/writes the session and (with `--single-answer-scoring
sync`) scores the answer with the reward model: that is the added latency reported. The bench's
gateway runs with `--single-answer-scoring off` by default, so the Chat path does the same
generation work as the HTTP path (which never scores a single answer) plus its session reads and
writes. Per-stage timings come from ChatFinal.timings.

The gateway has no gRPC call doing the HTTP path's stateless work, so HTTP is compared (a) with
Chat (both through the gateway; Chat does more: its session reads/writes) and (b) with direct
GenerateStream (what the HTTP front door plus the tokenizer render add). TTFT is the time to the
first delta (gRPC) or the first chunk holding a delta (HTTP); e2e is the time to the end of the
stream (gRPC status; HTTP body end after `data: [DONE]`).
Run: `python -m tests.benchmarks.bench_gateway --models-dir .models/tiny`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from chatstack.catalog import GATEWAY, GENERATION, REWARD, SESSION, TOKENIZER
from chatstack.core.process import ManagedProcess, free_port, start_grpc_service
from chatstack.core.redis_process import RedisProcess
from chatstack.local_stack import engine_placement_flags
from chatstack.v1 import (
    chat_pb2,
    chat_pb2_grpc,
    common_pb2,
    generation_pb2,
    generation_pb2_grpc,
    tokenizer_pb2,
    tokenizer_pb2_grpc,
)
from tests.benchmarks.measure import sse_events

API_KEY = "bench-secret-key"
STAGES = ("session_read", "template", "ttft", "generation", "reward", "session_write", "total")
MESSAGE = "Tell me a short story about a cat who sails to the sea."


@dataclass
class Samples:
    """Client-measured latencies (seconds) of one side."""

    total: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


@dataclass
class Result:
    """Both sides plus the gateway's own stage timings."""

    direct: Samples
    gateway: Samples
    http: Samples
    stages: dict[str, list[float]]
    prompt_mismatches: int
    prompt_tokens: int
    http_prompt_mismatches: int
    http_connections: int  # TCP connections the HTTP client opened (1: one persistent connection)
    model: str


def pct(values: list[float], q: float) -> float:
    """q-quantile in ms (nearest rank)."""
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1e3


def p50(values: list[float]) -> float:
    return statistics.median(values) * 1e3


def start_stack(models: Path, log_dir: Path, redis_url: str, scoring: str,
                ) -> tuple[list[ManagedProcess], dict[str, str]]:
    """The five services (stopped by the caller, in reverse order, even on failure); addresses
    holds "http" too: the gateway's HTTP API as `http://127.0.0.1:<port>`."""
    from chatstack.gateway.auth import hash_key

    procs: list[ManagedProcess] = []
    addresses: dict[str, str] = {}
    specs = [
        ("tokenizer", ("--model-dir", str(models / "lm")), TOKENIZER.proto_service),
        ("session", ("--redis-url", redis_url), SESSION.proto_service),
        ("generation", ("--model", str(models / "lm"), "--dtype", "float32", "--max-num-seqs", "16", "--cpu-kvcache-space-gib", "1",
                        *engine_placement_flags(0)),
         GENERATION.proto_service),
        ("reward", ("--model", str(models / "reward"), "--dtype", "float32", "--max-model-len", "512",
                    "--cpu-kvcache-space-gib", "1", *engine_placement_flags(1)),
         REWARD.proto_service),
    ]
    try:
        for name, flags, health in specs:
            port = free_port()
            print(f"  starting {name} ...", flush=True)
            procs.append(start_grpc_service(f"{name}-bench", name, port, free_port(), log_dir,
                                            (*flags, "--log-level", "WARNING"), health_service=health,
                                            timeout=300))
            addresses[name] = f"127.0.0.1:{port}"
        port, http_port = free_port(), free_port()
        gateway_flags = ["--api-keys", f"bench:{hash_key(API_KEY)}", "--log-level", "WARNING",
                         "--http-port", str(http_port), "--single-answer-scoring", scoring]
        for name, address in addresses.items():
            gateway_flags += [f"--{name}-address", address]
        print("  starting gateway ...", flush=True)
        procs.append(start_grpc_service("gateway-bench", "gateway", port, free_port(), log_dir,
                                        gateway_flags, health_service=GATEWAY.proto_service))
        addresses["gateway"] = f"127.0.0.1:{port}"
        addresses["http"] = f"http://127.0.0.1:{http_port}"
    except BaseException:
        stop_all(procs)
        raise
    return procs, addresses


def stop_all(procs: list[ManagedProcess]) -> None:
    for proc in reversed(procs):
        proc.stop(60)


async def run(addresses: dict[str, str], requests: int, max_tokens: int, warmup: int) -> Result:
    import aiohttp

    md = (("authorization", f"Bearer {API_KEY}"),)
    channels = {name: grpc.aio.insecure_channel(address) for name, address in addresses.items()
                if name != "http"}
    # One keep-alive connection, like the gRPC channel; the trace counts the connections opened.
    http_connections = 0

    async def on_connection(*_: object) -> None:
        nonlocal http_connections
        http_connections += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_connection)
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1), timeout=aiohttp.ClientTimeout(total=None),
        headers={"authorization": f"Bearer {API_KEY}"}, trace_configs=[trace])
    try:
        chat = chat_pb2_grpc.ChatServiceStub(channels["gateway"])
        generation = generation_pb2_grpc.GenerationServiceStub(channels["generation"])
        tokenizer = tokenizer_pb2_grpc.TokenizerServiceStub(channels["tokenizer"])

        # The prompt the gateway renders for a session holding just this user message.
        rendered = await tokenizer.ApplyChatTemplate(tokenizer_pb2.ApplyChatTemplateRequest(
            messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=MESSAGE)],
            add_generation_prompt=True))
        # The SamplingParams the gateway builds for n=1, temperature 0 (see gateway.answering.sampling_params).
        direct_request = generation_pb2.GenerateStreamRequest(
            token_ids=common_pb2.TokenIds(ids=rendered.token_ids),
            sampling=generation_pb2.SamplingParams(n=1, max_tokens=max_tokens, min_tokens=1, temperature=0.0))
        chat_request = chat_pb2.ChatRequest(message=MESSAGE, options=chat_pb2.ChatOptions(
            max_tokens=max_tokens, temperature=0.0, echo_prompt=True))
        session = (await chat.CreateSession(chat_pb2.ChatServiceCreateSessionRequest(), metadata=md)).session
        chat_request.session_id = session.session_id

        # The model id, from GET /v1/models (the HTTP API is up once the gateway is SERVING).
        async with http.get(f"{addresses['http']}/v1/models") as reply:
            reply.raise_for_status()
            model = (await reply.json())["data"][0]["id"]
        http_url = f"{addresses['http']}/v1/chat/completions"
        http_body = json.dumps({
            "model": model, "messages": [{"role": "user", "content": MESSAGE}], "stream": True,
            "stream_options": {"include_usage": True}, "max_tokens": max_tokens, "temperature": 0.0,
        }).encode()
        http_headers = {"content-type": "application/json"}

        async def direct_once(out: Samples) -> None:
            start = time.perf_counter()
            first, text = 0.0, ""
            async for message in generation.GenerateStream(direct_request):
                if message.HasField("delta"):
                    first = first or time.perf_counter() - start
                else:
                    text = message.final.choices[0].text
            out.total.append(time.perf_counter() - start)
            out.ttft.append(first)
            out.texts.append(text)

        prompt_mismatches = 0
        stages: dict[str, list[float]] = {s: [] for s in (*STAGES, "unaccounted")}

        async def gateway_once(out: Samples) -> None:
            nonlocal prompt_mismatches
            start = time.perf_counter()
            first, final = 0.0, None
            async for message in chat.Chat(chat_request, metadata=md):
                kind = message.WhichOneof("event")
                if kind == "delta":
                    first = first or time.perf_counter() - start
                elif kind == "session":
                    s = message.session
                    if s.prompt != rendered.prompt or s.prompt_tokens != len(rendered.token_ids):
                        prompt_mismatches += 1
                else:
                    final = message.final
            out.total.append(time.perf_counter() - start)
            out.ttft.append(first)
            if final is None:
                raise RuntimeError("Chat ended without a final message")
            out.texts.append(final.text)
            for stage in STAGES:
                stages[stage].append(getattr(final.timings, f"{stage}_seconds"))
            # What no stage covers (ttft is part of generation).
            t = final.timings
            stages["unaccounted"].append(t.total_seconds - t.session_read_seconds - t.template_seconds
                                         - t.generation_seconds - t.reward_seconds - t.session_write_seconds)
            # Untimed: pop the exchange so the next Chat sees the same (empty) history.
            await chat.Undo(chat_pb2.UndoRequest(session_id=session.session_id), metadata=md)

        http_prompt_mismatches = 0

        async def http_once(out: Samples) -> None:
            nonlocal http_prompt_mismatches
            start = time.perf_counter()
            first, parts, usage = 0.0, [], None
            async with http.post(http_url, data=http_body, headers=http_headers) as reply:
                if reply.status != 200:
                    raise RuntimeError(f"HTTP {reply.status}: {(await reply.text())[:300]}")
                async for event in sse_events(reply.content):
                    if "error" in event:
                        raise RuntimeError(f"HTTP stream error: {event}")
                    for choice in event.get("choices") or ():
                        delta = choice.get("delta") or {}
                        if "content" in delta:
                            first = first or time.perf_counter() - start
                            parts.append(delta["content"])
                    usage = event.get("usage") or usage
                # Read to the body's end (the chunked terminator after [DONE]): the stream is over,
                # as a gRPC call at its status, and the connection is left reusable.
                await reply.content.read()
            out.total.append(time.perf_counter() - start)
            out.ttft.append(first)
            out.texts.append("".join(parts))
            if usage is None or usage.get("prompt_tokens") != len(rendered.token_ids):
                http_prompt_mismatches += 1

        paths = (direct_once, gateway_once, http_once)
        for _ in range(warmup):
            for once in paths:
                await once(Samples())
        prompt_mismatches = http_prompt_mismatches = 0
        stages = {s: [] for s in (*STAGES, "unaccounted")}
        direct, gateway, http_samples = Samples(), Samples(), Samples()
        outs = (direct, gateway, http_samples)
        for i in range(requests):  # interleaved; the order rotates, so each path goes first as often
            for k in range(len(paths)):
                j = (i + k) % len(paths)
                await paths[j](outs[j])
        return Result(direct, gateway, http_samples, stages, prompt_mismatches, len(rendered.token_ids),
                      http_prompt_mismatches, http_connections, model)
    finally:
        await http.close()
        for channel in channels.values():
            await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", default=".models/tiny")
    parser.add_argument("--requests", type=int, default=50, help="sequential requests per side")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests per side first")
    parser.add_argument("--single-answer-scoring", choices=("sync", "async", "off"), default="off",
                        help="the gateway's scoring of a single answer (off: Chat does the HTTP path's "
                             "generation work, no reward call; sync: Chat also waits for the reward model)")
    args = parser.parse_args()
    models = Path(args.models_dir).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    print(f"logs in {tmp}", flush=True)
    redis = RedisProcess(free_port(), tmp / "redis").start()
    procs: list[ManagedProcess] = []
    try:
        procs, addresses = start_stack(models, tmp, redis.url, args.single_answer_scoring)
        r = asyncio.run(run(addresses, args.requests, args.max_tokens, args.warmup))
    finally:
        stop_all(procs)
        redis.stop()

    direct, gateway, stages = r.direct, r.gateway, r.stages
    same_text = all(t == direct.texts[0] for t in direct.texts + gateway.texts)
    print()
    print(f"{args.requests} sequential requests each way, interleaved; max_tokens {args.max_tokens}, "
          f"temperature 0, prompt {r.prompt_tokens} tokens; gateway single_answer_scoring "
          f"{args.single_answer_scoring}")
    print(f"  gateway prompt identical to the direct one on every request: {r.prompt_mismatches == 0}; "
          f"identical answers: {same_text}")
    print(f"  {'path':34s} {'p50 ms':>8s} {'p99 ms':>8s} {'TTFT p50 ms':>12s}")
    print(f"  {'GenerationService.GenerateStream':34s} {p50(direct.total):8.2f} {pct(direct.total, 0.99):8.2f} "
          f"{p50(direct.ttft):12.2f}")
    print(f"  {'ChatService.Chat (gateway)':34s} {p50(gateway.total):8.2f} {pct(gateway.total, 0.99):8.2f} "
          f"{p50(gateway.ttft):12.2f}")
    print("  gateway stage timings (ChatFinal.timings):")
    for stage, values in stages.items():
        print(f"    {stage:14s} p50 {p50(values):8.2f} ms  p99 {pct(values, 0.99):8.2f} ms")
    print(f"added latency gateway - direct: p50 {p50(gateway.total) - p50(direct.total):+.2f} ms, "
          f"p99 {pct(gateway.total, 0.99) - pct(direct.total, 0.99):+.2f} ms (aim <= 10 ms at p50)")
    report_http(r, args.single_answer_scoring)


def paired_p50(a: list[float], b: list[float]) -> float:
    """Median of the per-round differences a[i] - b[i] in ms (same round: same drift)."""
    return statistics.median(x - y for x, y in zip(a, b, strict=True)) * 1e3


def report_http(r: Result, scoring: str) -> None:
    """The HTTP path beside the gRPC ones: (a) vs Chat, (b) vs direct GenerateStream."""
    direct, gateway, http, stages = r.direct, r.gateway, r.http, r.stages
    same_http = all(t == direct.texts[0] for t in http.texts)
    print()
    print(f"HTTP path: POST /v1/chat/completions stream=true (SSE), model {r.model!r}, same message, "
          f"max_tokens, temperature 0; stateless")
    print(f"  HTTP prompt token count equal to the direct one on every request: "
          f"{r.http_prompt_mismatches == 0}; HTTP answers identical to direct: {same_http}; "
          f"HTTP connections opened: {r.http_connections} (persistent: {r.http_connections == 1})")
    rows = (("GenerationService.GenerateStream", direct), ("ChatService.Chat (gateway gRPC)", gateway),
            ("/v1/chat/completions (gateway HTTP)", http))
    print(f"  {'path':36s} {'TTFT p50':>9s} {'TTFT p95':>9s} {'e2e p50':>9s} {'e2e p95':>9s}  (ms)")
    for name, s in rows:
        print(f"  {name:36s} {p50(s.ttft):9.2f} {pct(s.ttft, 0.95):9.2f} {p50(s.total):9.2f} "
              f"{pct(s.total, 0.95):9.2f}")

    def compare(label: str, other: Samples) -> dict[str, float]:
        d = {"ttft50": p50(http.ttft) - p50(other.ttft),
             "ttft95": pct(http.ttft, 0.95) - pct(other.ttft, 0.95),
             "e2e50": p50(http.total) - p50(other.total)}
        print(f"  {label}")
        print(f"      difference of percentiles: TTFT p50 {d['ttft50']:+.2f} ms "
              f"(x{p50(http.ttft) / p50(other.ttft):.2f}), TTFT p95 {d['ttft95']:+.2f} ms, "
              f"e2e p50 {d['e2e50']:+.2f} ms (x{p50(http.total) / p50(other.total):.2f})")
        print(f"      paired (median of per-round differences): TTFT {paired_p50(http.ttft, other.ttft):+.2f} ms, "
              f"e2e {paired_p50(http.total, other.total):+.2f} ms")
        return d

    scored = "" if scoring == "off" else f", and its reward scoring ({scoring})"
    a = compare(f"(a) HTTP - gRPC Chat, both through the gateway. Not like for like: Chat also reads the "
                f"session before rendering (in its TTFT)\n      and stores the user turn (beside "
                f"generation) and the answer (after it: in its e2e){scored}; HTTP does neither.",
                gateway)
    compare("(b) HTTP - direct GenerateStream: what the HTTP front door (auth, JSON, SSE) plus the "
            "tokenizer render\n      (a tokenizer call the direct path made once, untimed) and the "
            "gateway's generation client add.", direct)
    # The same-work estimate: Chat minus its session stages (ChatFinal.timings), per request.
    chat_ttft = [t - s for t, s in zip(gateway.ttft, stages["session_read"], strict=True)]
    chat_e2e = [t - s - w - rw for t, s, w, rw in zip(gateway.total, stages["session_read"],
                                                      stages["session_write"], stages["reward"], strict=True)]
    print(f"  (c) estimate only: HTTP - (Chat minus its session_read/session_write/reward stage times, per "
          f"request): TTFT p50 {p50(http.ttft) - p50(chat_ttft):+.2f} ms, e2e p50 "
          f"{p50(http.total) - p50(chat_e2e):+.2f} ms\n      (the user-turn push overlaps generation "
          f"and stays in Chat's figures)")
    verdict = {True: "PASS", False: "MISS"}
    print(f"aim (a) HTTP adds <= 1 ms p50 over gRPC Chat: TTFT p50 {a['ttft50']:+.2f} ms "
          f"{verdict[a['ttft50'] <= 1.0]}, e2e p50 {a['e2e50']:+.2f} ms {verdict[a['e2e50'] <= 1.0]} "
          f"(Chat does session work HTTP does not: see (a), (c))")


if __name__ == "__main__":
    main()
