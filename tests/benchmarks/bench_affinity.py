"""Session affinity vs round robin over two generation replicas: TTFT per turn index and the
engines' prefix-cache hit rate, in the same run.

Multi-turn sessions whose history is long (a unique system prompt of ~`--history-tokens` tokens,
then the turns) go through two gateways over the *same* two generation replicas: one routes
generation by `session_affinity`, the other by `round_robin`. Waves alternate the policies (A/B,
B/A, ...) so machine drift hits both alike; each wave uses new sessions, so no policy reuses the
other's cache. A turn's prompt is its session's whole history: under affinity it meets the replica
that prefilled the previous turn and only the new tokens are computed; under round robin it lands
on either replica.

What round robin loses with two replicas is the previous exchange, not the whole history: after
turn 2 both replicas hold the session's long start, so a turn that lands on the "wrong" replica
recomputes the last question and answer (plus the part of a 128-token KV block after the last full
one). Turns here are chat-like, a short question (`--message-words`) and a longer answer
(`--max-tokens`), so that is what separates the policies; with more replicas round robin finds
less of each history. Three sessions at a time: an even number in lockstep would keep each
session on one replica by chance under round robin.

A caveat the figures carry: the next turn's prompt is the stored answer's *text* rendered again,
and a random model's tokens do not always survive decode/encode unchanged, so the cache match can
stop inside the previous answer; a trained model's text re-tokenizes far more stably.

The tiny test model prefills 2k tokens in a few ms, which would hide the effect, so the bench
builds a larger random Llama (`--hidden-size`, `--layers`) where prefill is most of TTFT.
Run: `python -m tests.benchmarks.bench_affinity` (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import tempfile
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from chatstack.catalog import GATEWAY, GENERATION, SESSION, TOKENIZER
from chatstack.core.process import ManagedProcess, free_port, start_grpc_service
from chatstack.core.redis_process import RedisProcess
from chatstack.local_stack import engine_placement_flags
from chatstack.models.tiny import TinyModelSpec, build_tiny_models
from chatstack.v1 import chat_pb2, chat_pb2_grpc
from tests.polling import await_until

API_KEY = "bench-secret-key"
POLICIES = ("session_affinity", "round_robin")
WORDS = ("ka to ri ne sa mo lu pe di go an er in on ul the and ing ion ver ter est ch sh th qu str pl gr"
         ).split()


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) + rng.choice(WORDS) for _ in range(n))


@dataclass
class Tally:
    """One policy's measurements over its waves."""

    ttft: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))  # turn -> s
    prompt_tokens: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    queries: float = 0.0
    hits: float = 0.0
    chats: int = 0
    empty: int = 0  # empty answers asked again


def scrape(port: int, name: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([-+\d.e]+)$", body, re.M))


def cache_counters(metrics_ports: list[int]) -> tuple[float, float]:
    """Prefix-cache (queries, hits) in tokens, summed over the replicas."""
    return (sum(scrape(p, "chatstack_generation_prefix_cache_queries_total") for p in metrics_ports),
            sum(scrape(p, "chatstack_generation_prefix_cache_hits_total") for p in metrics_ports))


def start_stack(models: Path, log_dir: Path, redis_url: str, kv_gib: float
                ) -> tuple[list[ManagedProcess], dict[str, str], list[int]]:
    """Tokenizer, session, two generation replicas (a core each) and one gateway per policy."""
    from chatstack.gateway.auth import hash_key

    procs: list[ManagedProcess] = []
    addresses: dict[str, str] = {}
    gen_metrics: list[int] = []

    def start(name: str, module: str, flags: tuple[str, ...], health: str) -> str:
        port, metrics_port = free_port(), free_port()
        print(f"  starting {name} ...", flush=True)
        procs.append(start_grpc_service(name, module, port, metrics_port, log_dir,
                                        (*flags, "--log-level", "WARNING"), health_service=health, timeout=600))
        if module == "generation":
            gen_metrics.append(metrics_port)
        return f"127.0.0.1:{port}"

    try:
        addresses["tokenizer"] = start("tokenizer", "tokenizer", ("--model-dir", str(models / "lm")),
                                       TOKENIZER.proto_service)
        addresses["session"] = start("session", "session", ("--redis-url", redis_url),
                                     SESSION.proto_service)
        replicas = [start(f"generation-{i}", "generation",
                          ("--model", str(models / "lm"), "--dtype", "float32", "--max-model-len", "4096",
                           "--cpu-kvcache-space-gib", f"{kv_gib:g}", *engine_placement_flags(i)),
                          GENERATION.proto_service) for i in range(2)]
        for policy in POLICIES:
            addresses[policy] = start(
                f"gateway-{policy}", "gateway",
                ("--api-keys", f"bench:{hash_key(API_KEY)}", "--tokenizer-address", addresses["tokenizer"],
                 "--session-address", addresses["session"], "--generation-address", ",".join(replicas),
                 "--reward-address", f"127.0.0.1:{free_port()}",  # never called: scoring off
                 "--single-answer-scoring", "off", "--generation-routing", policy,
                 "--max-message-chars", "100000", "--http-port", "0"),
                GATEWAY.proto_service)
    except BaseException:
        for proc in reversed(procs):
            proc.stop(60)
        raise
    return procs, addresses, gen_metrics


async def run_session(stub: chat_pb2_grpc.ChatServiceStub, rng: random.Random, history_tokens: int,
                      message_words: int, turns: int, max_tokens: int, tally: Tally) -> None:
    md = (("authorization", f"Bearer {API_KEY}"),)
    session_id, system = "", words(rng, history_tokens)  # about a token per word here
    for turn in range(1, turns + 1):
        message = f"turn {turn}: {words(rng, message_words)}"
        for attempt in range(3):  # a random model may answer with nothing: ask again (not timed)
            known = session_id  # a failed first turn deletes the session it created
            request = chat_pb2.ChatRequest(
                session_id=session_id, system_prompt=system if not session_id else "", message=message,
                options=chat_pb2.ChatOptions(max_tokens=max_tokens, temperature=1.0, seed=rng.randrange(1 << 30)))
            start, first = time.perf_counter(), None
            try:
                async for event in stub.Chat(request, metadata=md, timeout=300):
                    kind = event.WhichOneof("event")
                    if kind == "session":
                        session_id = event.session.session_id
                        prompt_tokens = event.session.prompt_tokens
                    elif kind == "delta" and first is None:
                        first = time.perf_counter() - start
                break
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.FAILED_PRECONDITION or attempt == 2:
                    raise
                tally.empty += 1
                session_id = known
        assert first is not None
        tally.prompt_tokens[turn].append(prompt_tokens)
        tally.ttft[turn].append(first)
        tally.chats += 1


async def wave(address: str, args: argparse.Namespace, seed: int, tally: Tally, gen_metrics: list[int]) -> None:
    rng = random.Random(seed)
    queries, hits = cache_counters(gen_metrics)
    sent_before = sum(map(sum, tally.prompt_tokens.values()))
    async with grpc.aio.insecure_channel(address) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        gate = asyncio.Semaphore(args.concurrency)

        async def one(i: int) -> None:
            async with gate:
                await run_session(stub, random.Random(rng.random()), args.history_tokens,
                                  args.message_words, args.turns, args.max_tokens, tally)
        await asyncio.gather(*(one(i) for i in range(args.sessions)))
    # The engines report a step's prefix-cache stats as they process its output: wait (with a
    # deadline) until every prompt of this wave has been counted as looked up.
    sent = sum(map(sum, tally.prompt_tokens.values())) - sent_before
    await await_until(lambda: cache_counters(gen_metrics)[0] >= queries + sent, 30,
                      "the engines' prefix-cache lookups of this wave", interval=0.1)
    q, h = cache_counters(gen_metrics)
    tally.queries += q - queries
    tally.hits += h - hits


def p(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1e3


def report(tallies: dict[str, Tally], turns: int) -> None:
    aff, rr = tallies["session_affinity"], tallies["round_robin"]
    print("\nTTFT by turn (ms; client-measured, through the gateway)")
    print(f"{'turn':>4} {'prompt':>7} | {'affinity p50':>12} {'p95':>7} | {'round-robin p50':>15} {'p95':>7} | "
          f"{'ratio p50':>9}")
    for turn in range(1, turns + 1):
        a, r = aff.ttft[turn], rr.ttft[turn]
        tokens = statistics.mean(aff.prompt_tokens[turn] + rr.prompt_tokens[turn])
        print(f"{turn:>4} {tokens:>7.0f} | {p(a, .5):>12.1f} {p(a, .95):>7.1f} | {p(r, .5):>15.1f} {p(r, .95):>7.1f} | "
              f"{p(a, .5) / p(r, .5):>9.2f}")
    late_a = [v for t in range(3, turns + 1) for v in aff.ttft[t]]
    late_r = [v for t in range(3, turns + 1) for v in rr.ttft[t]]
    ratio = statistics.median(late_a) / statistics.median(late_r)
    print("\nprefix-cache hit rate (tokens hit / tokens queried, both replicas):")
    for name, t in (("session_affinity", aff), ("round_robin", rr)):
        rate = t.hits / t.queries if t.queries else float("nan")
        print(f"  {name:<17} {rate:6.1%}  ({t.hits:,.0f} / {t.queries:,.0f} tokens, {t.chats} chats, "
              f"{t.empty} empty answers asked again)")
    verdict = "PASS" if ratio <= 0.7 else "MISS"
    print(f"\naim: affinity's TTFT p50 from turn 3 on <= 0.7 x round robin's: {ratio:.2f} {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=6, help="sessions per wave and policy")
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=3, help="sessions at once")
    parser.add_argument("--history-tokens", type=int, default=1000, help="system prompt length")
    parser.add_argument("--message-words", type=int, default=50, help="words per user turn")
    parser.add_argument("--max-tokens", type=int, default=128, help="answer length")
    parser.add_argument("--waves", type=int, default=2, help="A/B rounds")
    parser.add_argument("--hidden-size", type=int, default=384)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--kv-gib", type=float, default=1.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-affinity-") as tmp:
        root = Path(tmp)
        print(f"building a random Llama: hidden {args.hidden_size}, {args.layers} layers ...", flush=True)
        build_tiny_models(root / "models", TinyModelSpec(
            hidden_size=args.hidden_size, num_attention_heads=args.hidden_size // 64,
            num_hidden_layers=args.layers, intermediate_size=args.hidden_size * 8 // 3,
            max_position_embeddings=4096))
        (root / "logs").mkdir()
        redis = RedisProcess(free_port(), root / "redis")
        redis.start()
        procs, addresses, gen_metrics = start_stack(root / "models", root / "logs", redis.url, args.kv_gib)
        try:
            tallies = {policy: Tally() for policy in POLICIES}
            for w in range(args.waves):
                order = POLICIES if w % 2 == 0 else POLICIES[::-1]
                for policy in order:
                    started = time.perf_counter()
                    asyncio.run(wave(addresses[policy], args, 1000 * w + POLICIES.index(policy),
                                     tallies[policy], gen_metrics))
                    print(f"  wave {w + 1} {policy}: {time.perf_counter() - started:.1f}s", flush=True)
            report(tallies, args.turns)
        finally:
            for proc in reversed(procs):
                proc.stop(60)
            redis.stop()


if __name__ == "__main__":
    main()
