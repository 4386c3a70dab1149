"""Reward scoring: the RewardService vs the same vLLM pooling engine in-process.

1. ScoreBatch throughput (items/s) through the service (its own process, grpc.aio) vs
   `AsyncLLM.from_engine_args(engine_args(RewardConfig(...), runner="pooling"))` in this process,
   fed the same items rendered exactly as services/chatstack/reward/engine.py renders them (the
   reward model's HF chat template, add_generation_prompt=False) and scored the same way
   (PoolingParams(task="classify", use_activation=False), one request per item, gathered).
   The baseline renders each batch too, as the service does, so the ratio is what gRPC and the
   service add. The engines run one after another, never at once (2 cores).
2. Through the service: B concurrent Score calls vs one ScoreBatch of B items (latency of each).

CPU placement as in bench_generation (`--placement`, default off-engine): the service moves its
threads off the engine's OpenMP cores (`frontend_off_engine_cores`), and so does this process, as
the in-process baseline once its engine is up and as the service's client.

Run: `python -m tests.benchmarks.bench_reward --models-dir .models/tiny`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from chatstack.catalog import REWARD
from chatstack.core.cpu_placement import off_engine_cores
from chatstack.core.process import free_port, start_grpc_service
from chatstack.reward.config import RewardConfig
from chatstack.v1 import common_pb2, reward_pb2, reward_pb2_grpc

REWARD_SERVICE = REWARD.proto_service
WORDS = ("the cat sat on a mat while rain fell over quiet hills and rivers ran to the sea "
         "every answer should be short clear and kind to the reader who asked it").split()


#: The engine settings the service (as flags) and the in-process baseline (the config itself) share.
ENGINE_FIELDS = ("model", "dtype", "max_model_len", "max_num_seqs", "cpu_kvcache_space_gib", "enforce_eager",
                 "frontend_off_engine_cores")


def make_items(n: int, seed: int = 11) -> list[tuple[list[tuple[str, str]], str]]:
    """n (conversation, response) items: a user question of ~20 words and an answer of ~30."""
    rng = random.Random(seed)

    def text(words: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(words))

    return [([("user", text(rng.randint(12, 28)))], text(rng.randint(20, 40))) for _ in range(n)]


def to_proto(items: list[tuple[list[tuple[str, str]], str]]) -> list[reward_pb2.ScoreItem]:
    roles = {"system": common_pb2.ROLE_SYSTEM, "user": common_pb2.ROLE_USER,
             "assistant": common_pb2.ROLE_ASSISTANT}
    return [reward_pb2.ScoreItem(conversation=[common_pb2.ChatMessage(role=roles[r], content=c) for r, c in conv],
                                 response=response) for conv, response in items]


def render(tokenizer: Any, item: tuple[list[tuple[str, str]], str]) -> list[int]:
    """As VllmRewardEngine.render: conversation + the response as an assistant turn."""
    conversation, response = item
    messages = [{"role": r, "content": c} for r, c in conversation]
    messages.append({"role": "assistant", "content": response})
    return list(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=False,
                                              return_dict=False))


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1e3


async def timed_batches(score_batch: Callable[[], Awaitable[list[float]]], seconds: float, warmup: int = 2) -> tuple[list[float], list[float]]:
    """Call `score_batch()` for about `seconds` after a warm-up; (latencies, scores of the last call)."""
    for _ in range(warmup):
        await score_batch()
    lat: list[float] = []
    scores: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(lat) < 3:
        t = time.perf_counter()
        scores = await score_batch()
        lat.append(time.perf_counter() - t)
    return lat, scores


# -- in-process baseline ----------------------------------------------------------------------
async def in_process(config: RewardConfig, items: list[tuple[list[tuple[str, str]], str]],
                     seconds: float) -> tuple[list[float], list[float]]:
    from transformers import AutoTokenizer
    from vllm.v1.engine.async_llm import AsyncLLM

    from chatstack.core.vllm_config import engine_args

    tokenizer = AutoTokenizer.from_pretrained(config.model)
    llm = AsyncLLM.from_engine_args(engine_args(config, runner="pooling"))
    try:
        # The service's placement (frontend_off_engine_cores), once the engine is up.
        with off_engine_cores(enabled=config.frontend_off_engine_cores):
            return await timed_batches(in_process_batches(llm, tokenizer, items), seconds)
    finally:
        llm.shutdown()
        # vLLM's shutdown leaves this frame referenced (a stored traceback); drop the engine so
        # its __del__ does not run at interpreter exit, when the modules it needs are gone.
        del llm


def in_process_batches(llm: Any, tokenizer: Any,
                       items: list[tuple[list[tuple[str, str]], str]]) -> Callable[[], Awaitable[list[float]]]:
    """Render + score one batch as VllmRewardEngine.score does: one encode per item, gathered."""
    from vllm import PoolingParams

    params = PoolingParams(task="classify", use_activation=False)  # raw logit
    counter = 0

    async def score_one(ids: list[int]) -> float:
        nonlocal counter
        counter += 1
        value = float("nan")
        async for out in llm.encode({"prompt_token_ids": ids}, params, f"bench-{counter}"):
            value = float(out.outputs.data.reshape(-1)[0])
        return value

    async def score_batch() -> list[float]:
        rendered = [render(tokenizer, item) for item in items]
        return list(await asyncio.gather(*[score_one(ids) for ids in rendered]))

    return score_batch


# -- the service ------------------------------------------------------------------------------
@dataclass
class ServiceResult:
    batch_lat: list[float]
    scores: list[float]
    fanout_lat: list[float]  # B concurrent Score calls
    single_lat: list[float]  # one ScoreBatch of B


async def service(address: str, items: list[tuple[list[tuple[str, str]], str]], seconds: float,
                  fanout: int, rounds: int) -> ServiceResult:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = reward_pb2_grpc.RewardServiceStub(channel)
        batch = reward_pb2.ScoreBatchRequest(items=to_proto(items))

        async def score_batch() -> list[float]:
            return list((await stub.ScoreBatch(batch)).scores)

        batch_lat, scores = await timed_batches(score_batch, seconds)

        few = to_proto((items * (fanout // len(items) + 1))[:fanout])
        singles = [reward_pb2.ScoreRequest(item=item) for item in few]
        one_batch = reward_pb2.ScoreBatchRequest(items=few)

        async def fan() -> None:
            await asyncio.gather(*[stub.Score(r) for r in singles])

        await fan()  # warm-up
        await stub.ScoreBatch(one_batch)
        fanout_lat, single_lat = [], []
        for _ in range(rounds):  # interleaved so drift hits both alike
            t = time.perf_counter()
            await fan()
            fanout_lat.append(time.perf_counter() - t)
            t = time.perf_counter()
            await stub.ScoreBatch(one_batch)
            single_lat.append(time.perf_counter() - t)
    return ServiceResult(batch_lat, scores, fanout_lat, single_lat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", default=".models/tiny")
    parser.add_argument("--items", type=int, default=64, help="items per ScoreBatch")
    parser.add_argument("--seconds", type=float, default=20.0, help="ScoreBatch loop per side")
    parser.add_argument("--fanout", type=int, default=64, help="concurrent Score calls vs a batch of as many")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of the Score-vs-ScoreBatch comparison")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-model-len", type=int, default=512)
    parser.add_argument("--max-num-seqs", type=int, default=64)
    parser.add_argument("--cpu-kvcache-space-gib", type=float, default=1.0)
    parser.add_argument("--placement", choices=("off-engine", "none"), default="off-engine",
                        help="keep the service, the baseline and the client off the engine's cores")
    args = parser.parse_args()
    engine = RewardConfig(model=str(Path(args.models_dir, "reward").resolve()), dtype=args.dtype,
                          max_model_len=args.max_model_len, max_num_seqs=args.max_num_seqs,
                          cpu_kvcache_space_gib=args.cpu_kvcache_space_gib,
                          max_batch_items=max(256, args.items, args.fanout),
                          max_in_flight=max(512, 2 * args.items, 2 * args.fanout), log_level="WARNING",
                          frontend_off_engine_cores=args.placement == "off-engine")
    items = make_items(args.items)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-reward-"))
    print(f"logs in {log_dir}", flush=True)

    print("in-process pooling AsyncLLM ...", flush=True)
    base_lat, base_scores = asyncio.run(in_process(engine, items, args.seconds))

    print("RewardService ...", flush=True)
    port = free_port()
    flags = engine.cli_args(*ENGINE_FIELDS, "max_batch_items", "max_in_flight", "log_level")
    proc = start_grpc_service("reward-bench", "reward", port, free_port(), log_dir, flags,
                              health_service=REWARD_SERVICE, timeout=300)
    try:
        assert proc.proc is not None
        with off_engine_cores(proc.proc.pid, enabled=engine.frontend_off_engine_cores):
            r = asyncio.run(service(f"127.0.0.1:{port}", items, args.seconds, args.fanout, args.rounds))
    finally:
        proc.stop(60)

    n = len(items)
    base_ips = n * len(base_lat) / sum(base_lat)
    svc_ips = n * len(r.batch_lat) / sum(r.batch_lat)
    diff = max(abs(a - b) for a, b in zip(base_scores, r.scores, strict=True))
    print()
    print(f"ScoreBatch of {n} items (~{sum(len(c[0][1].split()) + len(a.split()) for c, a in items) // n} "
          f"words each), {args.dtype}, placement {args.placement}; max |score difference| service vs in-process: {diff:.2e}")
    print(f"  in-process pooling engine: {base_ips:8.0f} items/s  p50 {statistics.median(base_lat) * 1e3:7.2f} ms"
          f"  p99 {pct(base_lat, 0.99):7.2f} ms  ({len(base_lat)} batches)")
    print(f"  RewardService ScoreBatch : {svc_ips:8.0f} items/s  p50 {statistics.median(r.batch_lat) * 1e3:7.2f} ms"
          f"  p99 {pct(r.batch_lat, 0.99):7.2f} ms  ({len(r.batch_lat)} batches)")
    print(f"{args.fanout} concurrent Score calls vs one ScoreBatch of {args.fanout}, {args.rounds} rounds each:")
    fan_label, batch_label = f"{args.fanout} x Score", "1 x ScoreBatch"
    width = max(len(fan_label), len(batch_label))
    print(f"  {fan_label:{width}s}: p50 {statistics.median(r.fanout_lat) * 1e3:7.2f} ms  "
          f"p99 {pct(r.fanout_lat, 0.99):7.2f} ms")
    print(f"  {batch_label:{width}s}: p50 {statistics.median(r.single_lat) * 1e3:7.2f} ms  "
          f"p99 {pct(r.single_lat, 0.99):7.2f} ms")
    print(f"ratio {args.fanout} x Score / ScoreBatch latency (p50): "
          f"{statistics.median(r.fanout_lat) / statistics.median(r.single_lat):.2f}")
    print(f"ratio service / in-process ScoreBatch throughput: {svc_ips / base_ips:.3f} (aim >= 0.9)")


if __name__ == "__main__":
    main()
