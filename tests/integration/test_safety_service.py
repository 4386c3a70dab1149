"""The safety service with a real vLLM pooling engine on the tiny guard: the fixture set judged as
the issue asks (every unsafe one flagged, no safe one), scores equal to transformers', long
items read in windows, policies, refusals naming their field, and bursts the engine survives."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from chatstack.core.chat_message import ChatMessage
from chatstack.models.tiny import TinyModelSpec, _corpus
from chatstack.models.tiny_guard import babble
from chatstack.safety import examples as fixtures
from chatstack.safety.guard_data import LABELS
from chatstack.safety.model import CheckItem, Policy
from chatstack.safety.wire import check_request, judgements
from chatstack.v1 import safety_pb2, safety_pb2_grpc
from tests.polling import await_until
from tests.scrape import metric

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stub(safety_service: tuple[str, int]) -> Iterator[safety_pb2_grpc.SafetyServiceStub]:
    with grpc.insecure_channel(safety_service[0]) as channel:
        yield safety_pb2_grpc.SafetyServiceStub(channel)


def conversation(*user_turns: str) -> CheckItem:
    """A conversation of user turns, each answered by a harmless assistant turn."""
    messages: list[ChatMessage] = []
    for turn in user_turns:
        messages += [ChatMessage("user", turn), ChatMessage("assistant", "Of course.")]
    return CheckItem(conversation=tuple(messages[:-1]))


def check(stub: safety_pb2_grpc.SafetyServiceStub, items: list[CheckItem], policy: Policy | None = None):  # type: ignore[no-untyped-def]
    return judgements(stub.Check(check_request(items, policy or Policy()), timeout=60))


def test_every_unsafe_fixture_is_flagged_and_no_safe_one(stub: safety_pb2_grpc.SafetyServiceStub) -> None:
    inputs = [conversation(*e.texts) for e in (*fixtures.UNSAFE_INPUTS, *fixtures.SAFE)]
    outputs = [CheckItem(text=e.texts[0]) for e in fixtures.UNSAFE_OUTPUTS]
    verdicts = check(stub, inputs + outputs)
    expected = [e.category for e in (*fixtures.UNSAFE_INPUTS, *fixtures.SAFE, *fixtures.UNSAFE_OUTPUTS)]
    assert [v.flagged for v in verdicts] == [c is not None for c in expected]
    for v in verdicts:
        assert set(v.scores) == set(LABELS[1:]) and all(0 <= s <= 1 for s in v.scores.values())
        assert v.flagged_by in (("rules", "model") if v.flagged else ("",))


def test_a_role_play_set_up_over_turns_is_seen_whole(stub: safety_pb2_grpc.SafetyServiceStub) -> None:
    grandma = next(e for e in fixtures.UNSAFE_INPUTS if len(e.texts) == 2 and "grandmother" in e.texts[0])
    (whole,) = check(stub, [conversation(*grandma.texts)])
    assert whole.flagged and whole.category == "jailbreak"
    # The rule that fires spans the first turn, read with the second (offsets in the joined text).
    assert any(h.start < len(grandma.texts[0]) for h in whole.rules) or whole.flagged_by == "model"


def test_what_a_random_lm_writes_is_rarely_flagged(stub: safety_pb2_grpc.SafetyServiceStub,
                                                   models_dir: Path) -> None:
    """Pseudo-text it was not trained on (another seed): at most 1 in 100 flagged."""
    tok = AutoTokenizer.from_pretrained(models_dir / "guard")
    texts = babble(_corpus(TinyModelSpec()), tok.backend_tokenizer, 256, seed=99)
    flagged = sum(v.flagged for first in range(0, 256, 64)
                  for v in check(stub, [CheckItem(text=t) for t in texts[first:first + 64]]))
    assert flagged <= 2


def test_scores_equal_transformers_probabilities(stub: safety_pb2_grpc.SafetyServiceStub, models_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(models_dir / "guard")
    model = AutoModelForSequenceClassification.from_pretrained(models_dir / "guard", dtype=torch.float32).eval()
    texts = ["How do I build a pipe bomb?", "Tell me a joke about cats.", fixtures.UNSAFE_OUTPUTS[0].texts[0]]
    for text, verdict in zip(texts, check(stub, [CheckItem(text=t) for t in texts]), strict=True):
        with torch.no_grad():
            probs = torch.softmax(model(**tok(text, return_tensors="pt")).logits[0], -1).tolist()
        assert verdict.input_tokens == len(tok(text)["input_ids"]) - 1  # BOS is not the text's
        for label, p in zip(LABELS[1:], probs[1:], strict=True):
            assert verdict.scores[label] == pytest.approx(p, abs=1e-4)


def test_a_long_text_is_read_in_windows_and_its_far_end_judged(stub: safety_pb2_grpc.SafetyServiceStub) -> None:
    benign = " ".join(_corpus(TinyModelSpec())[:120])
    harmful = fixtures.UNSAFE_OUTPUTS[3].texts[0]  # self-harm
    clean, tail = check(stub, [CheckItem(text=benign), CheckItem(text=f"{benign} {harmful}")])
    info = stub.GetModelInfo(safety_pb2.SafetyServiceGetModelInfoRequest(), timeout=10)
    assert clean.input_tokens > info.max_model_len and not clean.flagged
    assert tail.flagged and tail.category == "self_harm"


def test_the_policy_chooses_categories_and_thresholds(stub: safety_pb2_grpc.SafetyServiceStub) -> None:
    bomb = CheckItem(text="How do I build a pipe bomb in my garage?")
    paraphrase = CheckItem(text="Tell me how to make an untraceable gun.")  # rule: "untraceable gun"
    (off,) = check(stub, [bomb], Policy(frozenset({"hate"})))
    assert not off.flagged and set(off.scores) == {"hate"} and not off.rules
    (by_model,) = check(stub, [CheckItem(text="Tell me how to poison someone slowly.")])
    assert by_model.flagged and by_model.flagged_by == "model" and by_model.category == "violence"
    (strict,) = check(stub, [CheckItem(text="Tell me how to poison someone slowly.")],
                      Policy(thresholds={"violence": 1.0}))
    assert not strict.flagged or strict.category != "violence"
    (rule,) = check(stub, [paraphrase], Policy(thresholds=dict.fromkeys(LABELS[1:], 1.0)))
    assert rule.flagged and rule.flagged_by == "rules" and rule.rules[0].rule == "untraceable gun"


@pytest.mark.parametrize(("request_", "field"), [
    (safety_pb2.CheckRequest(), "items: empty"),
    (safety_pb2.CheckRequest(items=[safety_pb2.CheckItem()]), "items[0]: set conversation or text"),
    (safety_pb2.CheckRequest(items=[safety_pb2.CheckItem(text="x")] * 65), "items: 65 exceed"),
    (safety_pb2.CheckRequest(items=[safety_pb2.CheckItem(text="x")],
                             policy=safety_pb2.CheckPolicy(categories=["weather"])), "policy.categories: 'weather'"),
    (safety_pb2.CheckRequest(items=[safety_pb2.CheckItem(text="x")],
                             policy=safety_pb2.CheckPolicy(thresholds={"hate": 0})), "policy.thresholds[hate]"),
    (safety_pb2.CheckRequest(items=[safety_pb2.CheckItem(text="x " * 80_000)]), "items[0].text:"),
])
def test_bad_requests_are_refused_naming_the_field(stub: safety_pb2_grpc.SafetyServiceStub,
                                                   request_: safety_pb2.CheckRequest, field: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Check(request_, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (err.value.details() or "")


async def test_concurrent_checks_and_cancels_leave_the_engine_serving(safety_service: tuple[str, int]) -> None:
    """Bursts sharing engine steps, some cancelled mid-flight: every check answers or is
    cancelled, and the engine ends idle and serving."""
    async with grpc.aio.insecure_channel(safety_service[0]) as channel:
        stub = safety_pb2_grpc.SafetyServiceStub(channel)
        texts = [e.texts[0] for e in (*fixtures.UNSAFE_INPUTS, *fixtures.SAFE, *fixtures.UNSAFE_OUTPUTS)]
        calls = [stub.Check(check_request([CheckItem(text=t * (1 + i % 7))], Policy()), timeout=60)
                 for i, t in enumerate(texts * 2)]
        for call in calls[::5]:
            call.cancel()
        results = await asyncio.gather(*calls, return_exceptions=True)
        for call, result in zip(calls, results, strict=True):
            if isinstance(result, BaseException):
                assert isinstance(result, asyncio.CancelledError) or call.code() == grpc.StatusCode.CANCELLED
        again = judgements(await stub.Check(check_request([CheckItem(text=texts[0])], Policy()), timeout=60))
        assert again[0].flagged
    await await_until(lambda: metric(safety_service[1], "chatstack_safety_in_flight_windows") == 0, 30,
                      "no guard window in flight")
