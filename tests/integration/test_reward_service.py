"""The reward service with a real vLLM pooling engine, checked against transformers."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from chatstack.v1 import common_pb2, reward_pb2, reward_pb2_grpc

pytestmark = pytest.mark.integration
ROLE = {"system": common_pb2.ROLE_SYSTEM, "user": common_pb2.ROLE_USER, "assistant": common_pb2.ROLE_ASSISTANT}
CONVERSATIONS = [
    ([("user", "ka to ri")], "sa mo lu"),
    ([("system", "be kind"), ("user", "the and ing?")], "ver ter est."),
    ([("user", "a"), ("assistant", "b"), ("user", "c d e f")], "qu str pl gr 42"),
    ([("user", "émigré ß 中文 😀")], "→ ok"),
]


def item(conversation: list[tuple[str, str]], response: str) -> reward_pb2.ScoreItem:
    return reward_pb2.ScoreItem(
        conversation=[common_pb2.ChatMessage(role=ROLE[r], content=c) for r, c in conversation],
        response=response)


@pytest.fixture(scope="module")
def stub(reward_service: tuple[str, int]) -> Iterator[reward_pb2_grpc.RewardServiceStub]:
    with grpc.insecure_channel(reward_service[0]) as channel:
        yield reward_pb2_grpc.RewardServiceStub(channel)


@pytest.fixture(scope="module")
def reference(models_dir: Path):  # type: ignore[no-untyped-def]
    path = models_dir / "reward"
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()

    def score(conversation: list[tuple[str, str]], response: str) -> tuple[float, int]:
        messages = [{"role": r, "content": c} for r, c in conversation]
        messages.append({"role": "assistant", "content": response})
        ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=False, return_dict=False)
        with torch.no_grad():
            return model(torch.tensor([ids])).logits[0, 0].item(), len(ids)

    return score


def test_scores_equal_transformers_raw_logits(stub: reward_pb2_grpc.RewardServiceStub, reference) -> None:  # type: ignore[no-untyped-def]
    for conversation, response in CONVERSATIONS:
        got = stub.Score(reward_pb2.ScoreRequest(item=item(conversation, response)), timeout=60)
        want, tokens = reference(conversation, response)
        assert got.input_tokens == tokens
        assert got.score == pytest.approx(want, abs=1e-4)


def test_rank_order_equals_sorting_score_results_with_ties_by_index(
    stub: reward_pb2_grpc.RewardServiceStub,
) -> None:
    conversation = [("user", "ka to ri")]
    candidates = ["sa mo lu", "the and", "sa mo lu", "ver", "x y z", "the and"]  # duplicates tie
    scores = [stub.Score(reward_pb2.ScoreRequest(item=item(conversation, c)), timeout=60).score for c in candidates]
    expected = sorted(range(len(candidates)), key=lambda i: (-scores[i], i))
    ranked = stub.Rank(reward_pb2.RankRequest(
        conversation=item(conversation, "x").conversation, candidates=candidates), timeout=60).ranked
    assert [r.index for r in ranked] == expected
    assert [r.text for r in ranked] == [candidates[i] for i in expected]
    assert [r.score for r in ranked] == pytest.approx([scores[i] for i in expected], abs=1e-4)
    positions = {r.index: p for p, r in enumerate(ranked)}
    assert positions[0] < positions[2] and positions[1] < positions[5]  # equal scores: lower index first


async def test_score_batch_of_64_equals_64_score_calls(reward_service: tuple[str, int]) -> None:
    items = [item(CONVERSATIONS[i % 4][0], f"{CONVERSATIONS[i % 4][1]} {i}") for i in range(64)]
    async with grpc.aio.insecure_channel(reward_service[0]) as channel:
        stub = reward_pb2_grpc.RewardServiceStub(channel)
        batch = await stub.ScoreBatch(reward_pb2.ScoreBatchRequest(items=items), timeout=120)
        singles = await asyncio.gather(*[stub.Score(reward_pb2.ScoreRequest(item=i), timeout=120) for i in items])
    assert len(batch.scores) == 64
    assert list(batch.scores) == pytest.approx([s.score for s in singles], abs=1e-4)
    assert list(batch.input_tokens) == [s.input_tokens for s in singles]


@pytest.mark.parametrize(
    ("method", "request_", "needle"),
    [
        ("Rank", reward_pb2.RankRequest(conversation=item([("user", "a")], "x").conversation), "candidates: empty"),
        ("Rank", reward_pb2.RankRequest(conversation=item([("user", "a")], "x").conversation,
                                        candidates=["c"] * 9), "candidates: 9 exceed the limit of 8"),
        ("Rank", reward_pb2.RankRequest(candidates=["c"]), "conversation: empty"),
        ("Rank", reward_pb2.RankRequest(conversation=item([("user", "a")], "x").conversation,
                                        candidates=["ok", "y " * 600]), "candidates[1]: "),
        ("ScoreBatch", reward_pb2.ScoreBatchRequest(), "items: empty"),
        ("ScoreBatch", reward_pb2.ScoreBatchRequest(items=[item([("user", "a")], "b")] * 65),
         "items: 65 exceed the limit of 64"),
        ("ScoreBatch", reward_pb2.ScoreBatchRequest(items=[item([("user", "a")], "b"), item([("user", "a")], "x " * 600)]),
         "items[1].response: "),
        ("Score", reward_pb2.ScoreRequest(item=reward_pb2.ScoreItem(
            conversation=[common_pb2.ChatMessage(role=common_pb2.ROLE_UNSPECIFIED, content="q")], response="r")),
         "items[0].conversation[0].role: unspecified"),
    ],
)
def test_bad_input_is_invalid_argument_naming_the_item(
    stub: reward_pb2_grpc.RewardServiceStub, method: str, request_: object, needle: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        getattr(stub, method)(request_, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.value.details()


def test_over_length_input_names_max_model_len(stub: reward_pb2_grpc.RewardServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(reward_pb2.ScoreRequest(item=item([("user", "a")], "x " * 600)), timeout=10)
    assert "exceed the reward model's max_model_len 512" in err.value.details()


def test_metrics_have_scoring_latency_and_batch_sizes_promtool_clean(
    stub: reward_pb2_grpc.RewardServiceStub, reward_service: tuple[str, int]
) -> None:
    stub.Score(reward_pb2.ScoreRequest(item=item([("user", "a")], "b")), timeout=60)
    body = urllib.request.urlopen(f"http://127.0.0.1:{reward_service[1]}/metrics").read()
    for name in (b"chatstack_reward_scoring_duration_seconds_bucket", b"chatstack_reward_batch_items_bucket",
                 b"chatstack_reward_items_total"):
        assert name in body
    check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert (check.returncode, check.stdout, check.stderr) == (0, b"", b"")
